"""The processing core both runtimes and replay share (see :mod:`engine.core.process`)."""
