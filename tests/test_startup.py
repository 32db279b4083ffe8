"""pytest's own costs. Start-up: every xdist worker imports every test file to collect it, and every pytest process
loads the installed plugins (tests/startup_plugin.py), so nothing slow that only some tests need is imported then.
Scheduling: the weights in conftest.py name units that exist."""

import sys
import types

import pytest
import startup_plugin


@pytest.fixture
def module_name(request, tmp_path, monkeypatch):
    """A module of its own in tmp_path, named after the test, gone from sys.modules afterwards."""
    name = f"slow_to_import_{request.node.name[5:25]}"
    (tmp_path / f"{name}.py").write_text("def check(rule, value):\n    return (rule, value)\n\nLIMIT = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_collection_imported_neither_nbgrader_nor_the_iri_parsers():
    assert startup_plugin.at_collection_end is not None, "startup_plugin is not loaded: pyproject.toml's addopts"
    assert startup_plugin.at_collection_end == dict.fromkeys(startup_plugin.SLOW_AT_COLLECTION, False)


def test_the_garbage_collector_runs_after_collection_without_walking_what_collection_imported():
    import gc

    assert gc.isenabled()  # off only while collecting
    assert gc.get_freeze_count() > 100_000  # numba, the test modules...: frozen at the end of collection
    from nbkit.core import collector

    assert gc.get_threshold()[0] == collector.GC_YOUNG != 700  # nbkit's setting for compiling, not Python's default


def test_the_stand_in_imports_the_module_on_first_use_and_forwards_calls(module_name):
    startup_plugin.lazy_module(module_name, "check")
    stand_in = sys.modules[module_name]
    check = stand_in.check  # what `from module import check` binds: nothing imported yet

    assert sys.modules[module_name] is stand_in and "LIMIT" not in vars(stand_in)
    assert check("iri", "x") == ("iri", "x")  # imported now, and the call went to the real function
    real = sys.modules[module_name]
    assert real is not stand_in and real.LIMIT == 3
    assert check("iri", "y") == ("iri", "y")
    assert not hasattr(stand_in, "__file__")  # tools walking sys.modules do not import it by asking


def test_any_other_name_imports_the_module_at_once(module_name):
    startup_plugin.lazy_module(module_name)
    assert sys.modules[module_name].LIMIT == 3
    assert sys.modules[module_name].__file__.endswith(f"{module_name}.py")


def test_nothing_is_replaced_that_is_imported_already_or_not_installed():
    import json

    startup_plugin.lazy_module("json", "dumps")
    assert sys.modules["json"] is json
    startup_plugin.lazy_module("no_such_module_here_at_all", "check")
    assert "no_such_module_here_at_all" not in sys.modules


@pytest.mark.parametrize("options, controller", [
    ({"collectonly": False, "dist": "loadfile", "tx": ["popen", "popen"]}, True),   # course.sh test: -n 2
    ({"collectonly": False, "dist": "no", "tx": []}, False),                        # a worker, -n 0, or no -n
    ({"collectonly": True, "dist": "loadfile", "tx": ["popen", "popen"]}, False),   # -n 2 --collect-only: no workers
])
def test_only_the_xdist_controller_skips_importing_nbkit(pytestconfig, options, controller):
    import conftest

    config = types.SimpleNamespace(pluginmanager=pytestconfig.pluginmanager, getoption=options.__getitem__)
    assert conftest.is_xdist_controller(config) is controller
    assert not conftest.is_xdist_controller(pytestconfig) and "nbkit" in sys.modules  # this process runs tests


def test_every_weighted_unit_exists():
    import importlib

    import conftest

    for unit in conftest.FILE_SECONDS:  # a renamed file or exercise would silently fall back to the default weight
        path, _, exercise = unit.partition("::")
        assert (conftest.ROOT / path).is_file(), unit
        if exercise:  # an exercise of tests/test_probe_answers.py (conftest.work_unit)
            answers = importlib.import_module(f"probe.answers_nb{exercise[:2]}").ANSWERS
            assert any(a.id.startswith(f"{exercise}-") for a in answers), unit
    for number in conftest.UNIT_SECONDS:
        assert len(list((conftest.ROOT / "notebooks").glob(f"{number}_*.ipynb"))) == 1, number


@pytest.mark.subprocess
def test_pytest_starts_without_xdist():
    """The scheduler hook is registered only where xdist is loaded: `pytest -p no:xdist` once refused to start."""
    import subprocess

    import conftest

    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "--collect-only",
                        "-q", "tests/test_startup.py"], cwd=conftest.ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "test_pytest_starts_without_xdist" in r.stdout


def test_the_heaviest_first_scheduler_is_registered_where_xdist_is_loaded(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("xdist")
    assert pytestconfig.pluginmanager.get_plugin("nbkit-heaviest-first") is not None


def test_a_unit_that_reads_what_another_compiles_starts_after_it_should_have_ended(monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "FILE_SECONDS", {"tests/test_executor.py": 10, "tests/test_executor_bounds.py": 20,
                                                   "tests/test_dist.py": 15, "tests/test_ptx.py": 10,
                                                   "tests/test_hints.py": 5, "tests/test_lint.py": 1})
    order = conftest.unit_order(dict.fromkeys(conftest.FILE_SECONDS, 1), workers=2)
    # 20 + 15 + 10 s of work before it on 2 workers: it starts about 22 s in, after the 20 s of its partner
    assert order == ["tests/test_executor_bounds.py", "tests/test_dist.py", "tests/test_ptx.py",
                     "tests/test_executor.py", "tests/test_hints.py", "tests/test_lint.py"]
    assert conftest.unit_order({"tests/test_executor.py": 1, "tests/test_lint.py": 1}) == [
        "tests/test_executor.py", "tests/test_lint.py"]  # without its partner: by weight


def test_with_the_real_weights_every_unit_of_after_starts_where_its_partner_should_have_ended():
    """All of AFTER at once, with the weights the run uses: placing one unit must not undo another's place (moving
    the learner copies behind notebook 08 once put test_executor beside test_executor_bounds)."""
    import conftest

    units = dict.fromkeys(conftest.FILE_SECONDS, 1) | {f"notebooks/{n}_x.ipynb": 1 for n in conftest.UNIT_SECONDS}
    units["notebooks/08_cifar10_capstone.ipynb"] = units.pop("notebooks/08_x.ipynb")
    order = conftest.unit_order(units, workers=2)
    weight = {u: conftest.unit_seconds(u, 1) for u in order}
    for unit, partner in conftest.AFTER.items():
        start = conftest._next_start(order[:order.index(unit)], weight, 2)
        partner_end = conftest._next_start(order[:order.index(partner)], weight, 2) + weight[partner]
        assert start >= partner_end, (unit, start, partner, partner_end)


def test_the_learner_copies_are_one_unit_that_starts_after_notebook_08():
    """One unit, so one worker runs every learner copy in one kernel (tests/test_learner.py's fixture); heavier than
    any notebook, yet started where notebook 08 under nbval should have ended, so it loads what that compiled."""
    import conftest

    test = "tests/test_learner.py::test_learner_copy_runs_top_to_bottom_and_every_check_says_not_solved"
    assert {conftest.work_unit(f"{test}[{stem}]") for stem in ("00_welcome", "08_cifar10_capstone")} == {
        "tests/test_learner.py"}
    units = {"tests/test_learner.py": 13, "notebooks/08_cifar10_capstone.ipynb": 1,
             "notebooks/00_welcome.ipynb": 1, "tests/test_lint.py": 1}
    order = conftest.unit_order(units, workers=2)
    assert order.index("tests/test_learner.py") > order.index("notebooks/08_cifar10_capstone.ipynb")
    assert conftest.unit_seconds("tests/test_learner.py", 13) > conftest.unit_seconds(
        "notebooks/08_cifar10_capstone.ipynb", 1)
