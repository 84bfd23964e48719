"""The ``medprune`` command line: one thin module per verb over a public function.

A verb module ``medprune.cli.<verb>`` defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; :mod:`medprune.cli.__main__` discovers it automatically.
"""
