"""The `studies` section: one module per special study, `studies.<study>` <->
`lowdim.config.studies.<study>` <-> `lowdim.studies.<study>`.

Nothing is imported here, so a stage runs (and depends on) only the study sections it reads.
"""
