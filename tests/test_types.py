"""The type check of handlers against their service's dependencies (`Context[Deps]`), run with mypy's API.

The first test checks the runtime and every service's handlers and wiring; the second type-checks small
snippets to show the check catches a handler reaching for a dependency its `Deps` type lacks, and a service
whose `build_deps` returns something other than what its handlers declare.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
CHECKED = [
    ROOT / "shared" / "service.py",
    ROOT / "shared" / "runtime",
    *sorted(ROOT.glob("services/*/handlers.py")),
    *sorted(ROOT.glob("services/*/main.py")),
    ROOT / "tests" / "probe_service.py",
]


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module's runs, so the snippets reuse what the first run learnt of the runtime."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(cache: Path, *paths: Path) -> tuple[str, int]:
    """mypy's report and exit status for `paths`, with the project's [tool.mypy] and its packages importable."""
    stdout, stderr, status = api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache),
        "--show-error-codes", *map(str, paths),
    ])
    return stdout + stderr, status


def test_handlers_runtime_and_wiring_type_check(mypy_cache: Path) -> None:
    report, status = _mypy(mypy_cache, *CHECKED)
    assert status == 0, report
    checked = int(re.search(r"no issues found in (\d+) source files", report)[1])  # type: ignore[index]
    assert checked >= len(CHECKED) - 1 + len(list((ROOT / "shared" / "runtime").glob("*.py")))


SNIPPET_HEAD = '''
    from dataclasses import dataclass

    from sqlalchemy import Engine, MetaData

    from schemas import NewsletterConsentChanged, UserDeregistered
    from shared.service import Context, Handlers, Service


    @dataclass
    class Gateways:
        paypal: str


    @dataclass
    class OtherGateways:
        visma: str


    def erase(event: UserDeregistered, ctx: Context[Gateways]) -> None:
        print(ctx.deps.paypal)  # what Gateways has passes
'''

MISSING_ATTRIBUTE = '''
    def consent(event: NewsletterConsentChanged, ctx: Context[Gateways]) -> None:
        print(ctx.deps.visma)


    HANDLERS: Handlers[Gateways] = {UserDeregistered: erase, NewsletterConsentChanged: consent}
'''

MISMATCHED_DEPS = '''
    HANDLERS: Handlers[Gateways] = {UserDeregistered: erase}


    def build_deps(_engine: Engine) -> OtherGateways:
        return OtherGateways(visma="company")


    SERVICE = Service(name="snippet", handlers=HANDLERS, metadata=MetaData(), build_deps=build_deps)
'''


@pytest.mark.parametrize(("body", "error"), [
    pytest.param(MISSING_ATTRIBUTE, r'"Gateways" has no attribute "visma"', id="handler-uses-what-deps-lacks"),
    # build_deps gives OtherGateways where the handlers take Context[Gateways]: no one Deps fits both.
    pytest.param(MISMATCHED_DEPS, r'Cannot infer value of type parameter "Deps" of "Service"',
                 id="build-deps-differs-from-handlers"),
])
def test_a_dependency_mistake_is_reported(
        body: str, error: str, mypy_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # the snippet lives outside the project but imports it
    module = tmp_path / "snippet_service.py"
    module.write_text(textwrap.dedent(SNIPPET_HEAD) + textwrap.dedent(body))
    report, status = _mypy(mypy_cache, module)
    assert status == 1, report
    assert re.search(rf"snippet_service\.py:\d+: error: {error}", report), report
    assert report.count("error:") == 1, report
