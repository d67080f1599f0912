"""Inference: load exported models and generate video with them.

`loading.load_exported` reads an export (`asset:NAME` or a directory written by `launch/export.py`) and
checks it is the kind of model asked for; `teacher.generate` is the teacher's pipeline (encode the
conditions, sample, decode); `heldout.heldout_clips` selects the held-out SynthWorld scenes every
evaluation uses. `launch/generate.py`, the teacher stage's training samples and the later student and
play sessions call these; training stages keep only their init, loss and dataset.
"""
