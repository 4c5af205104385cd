"""The ``qgen`` command line (:mod:`qgen.cli.main`) and its plain-text reports
(:mod:`qgen.cli.report`): the last stage, which calls every other one."""

from qgen.cli.main import main

__all__ = ["main"]
