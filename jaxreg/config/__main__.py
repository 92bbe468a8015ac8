"""python -m jaxreg.config [--config=FILE[:VARIANT]] [--config.KEY=VALUE ...] [--changed]

Prints the resolved config of FILE (the base config without --config), every key with
its value, its default when it differs, its doc and what it allows; the config is
validated first, so a bad key or value is one line `error: ...` and exit code 2, as
for jaxreg.main. `--markdown` prints the config reference instead (docs/config.md is
this output).
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from jaxreg import cli, config as config_lib
from jaxreg.config import reference

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally :VARIANT (see configs/); default: the base "
    "config.", lock_config=True)
flags.DEFINE_bool("changed", False, "Only the keys whose value differs from the default.")
flags.DEFINE_bool("markdown", False, "Print the config reference (docs/config.md).")


def main(argv):
  cli.no_stray_arguments(argv)
  if FLAGS.markdown:
    sys.stdout.write(reference.markdown())
    return
  if FLAGS["config"].present:
    config = cli.loaded_config(FLAGS, "config")
  else:
    config = config_lib.get_base_config()
  try:
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    cli.fail(str(e))
  sys.stdout.write(reference.listing(config, only_changed=FLAGS.changed))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
