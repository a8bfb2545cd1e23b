"""Repository-wide pytest setup: the chapter notebooks run through nbmake when it is installed.

`python -m pytest` (the README's test command, and CI's) executes chapters/*.ipynb with nbmake,
which requirements-dev.txt installs. It is switched on here rather than by `--nbmake` in
pyproject's addopts because pytest refuses an option whose plugin is missing: a student with only
the runtime requirements and pytest could then not run a grader
(`python -m pytest exercises/test_ex01_patchify.py`). Without nbmake, notebooks are not collected.
"""
NBMAKE_TIMEOUT_S = 600          # per notebook cell; an explicit --nbmake-timeout wins


def pytest_configure(config):
    if not hasattr(config.option, "nbmake"):          # the plugin is not installed (or -p no:nbmake)
        return
    config.option.nbmake = True
    if not any(arg.startswith("--nbmake-timeout") for arg in config.invocation_params.args):
        config.option.nbmake_timeout = NBMAKE_TIMEOUT_S
