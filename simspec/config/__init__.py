"""Input files -> typed objects; every error names the file, the key and the reason.

One concept per module:
  fields.py           the schema toolkit: `Strict` (unknown keys are errors) and shared field types
  pydantic_errors.py  pydantic's errors -> one InputError line (file, dotted key, reason)
  files.py            reading TOML, finding the data files a scenario names
  device.py           a [placement] device: a catalog entry merged with inline figures
  workload.py         the [workload] section
  scenario.py         the scenario schema, its loader and `Scenario.with_` (typed changes)
  patch.py            how a mapping patches scenario tables (`with_`, a study's [patch])
The names below are the ones most callers want.
"""

from simspec.config.files import resolve_data_path
from simspec.config.scenario import Scenario, load_scenario, parse_scenario

__all__ = ["Scenario", "load_scenario", "parse_scenario", "resolve_data_path"]
