"""Repository tooling (stage deps, verification, the browser check); never imported by a stage
or by the rest of the package.

Nothing is imported here.
"""
