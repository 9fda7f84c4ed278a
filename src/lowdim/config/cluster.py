"""Rules shared by the Ray subsections of the parameters (`train.ray`, `distances.ray`)."""

from __future__ import annotations

from lowdim.config.load import Check

# Ray's rule for resource requests: a fraction of one unit, or whole units.
Resource = Check(lambda v: v >= 0 and (v <= 1 or float(v).is_integer()),
                 "must be a fraction in [0, 1] or a whole number (Ray's rule for resource "
                 "requests)")
Address = Check(lambda v: bool(v.strip()), "use auto (the running cluster), host:port, or null "
                "(start a local Ray instance)")
Retries = Check(lambda v: v >= 0, "must be >= 0")
