"""The synthetic MMI-format corpus (the embedded default data set): `facs synth OUT`.

Modules: identity (subjects and filming styles), timeline (AU events and intensity courses),
draw (the face and what each AU changes), render (pose, lighting, noise, background),
writer (MMI's files), corpus (the whole corpus, the command line).
"""

from facs.synth.corpus import add_arguments, generate, is_synthetic, run
from facs.synth.timeline import AUS

__all__ = ["AUS", "add_arguments", "generate", "is_synthetic", "run"]
