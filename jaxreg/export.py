"""python -m jaxreg.export --workdir=DIR --out=DIR2 [--checkpoint=best|latest|STEP]

Writes a trained run's model where other tools load it:

* BERT family (model.family='bert') -> a Hugging Face directory: `model.safetensors`
  in PyTorch key names and layouts (written with numpy and the safetensors package: no
  torch needed), `config.json` with the run's classes as `id2label` / `label2id` and
  its dropout settings, and the tokenizer files. transformers loads it with
  `AutoModelForSequenceClassification.from_pretrained(DIR2)` (PyTorch, any version),
  or in 4.57's Flax with `FlaxAutoModelForSequenceClassification.from_pretrained(DIR2,
  from_pt=True)`.
* RNN and ResNet -> `flax_model.msgpack` (flax.serialization: {'params', and ResNet's
  'batch_stats'}) beside the run's config.json, model.json and vocab.json: the spec that
  rebuilds the module (jaxreg.models.*.from_config) and its preprocessing. DIR2 is
  itself a workdir `jaxreg.predict --workdir=DIR2` reads (docs/predict.md has a ten-line
  snippet that loads it with flax alone).

DIR2 must not exist or be empty; it is written in a temporary directory beside it and
renamed into place, so a failed export leaves nothing.
"""

from __future__ import annotations

from absl import app, flags

from jaxreg import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A workdir written by jaxreg.main.")
flags.DEFINE_string("out", None, "The directory to write (new or empty).")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.")



def main(argv):
  cli.quiet_libraries()
  cli.no_stray_arguments(argv)
  if not FLAGS.workdir or not FLAGS.out:
    cli.fail("--workdir and --out are required")
  with cli.user_errors():
    # Here, not at the top: jax and flax load in seconds, which `--help` need not.
    from jaxreg.exports import export
    try:
      out = export(FLAGS.workdir, FLAGS.out, FLAGS.checkpoint)
    except FileExistsError as e:
      cli.fail(str(e))
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
