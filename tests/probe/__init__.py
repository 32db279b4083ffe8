"""Independent answers to every exercise, written from the learner notebooks only (not from the checks).

Each ``answers_nbNN.py`` holds kernels and functions a learner might write, correct alternatives and realistic
mistakes, each with a docstring saying which, and ``ANSWERS``: the list of :class:`Answer` that
``tests/test_probe_answers.py`` runs through the checks.
"""

import nbkit  # noqa: F401 - first, so that numba.cuda is set up for the mode (simulator) before the answers import it
