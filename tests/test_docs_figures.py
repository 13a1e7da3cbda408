"""docs/RELIABILITY.md and BENCHMARKS.md state the figures of their results files: each generated block
equals what tests/docs_figures.py renders from tests/chaos/results/latest.json and bench/results/latest.json."""

from __future__ import annotations

import json

import pytest

from tests import docs_figures


@pytest.mark.parametrize("doc", list(docs_figures.DOCUMENTS), ids=lambda p: p.name)
def test_the_documents_figures_are_those_of_the_results_file(doc) -> None:
    results_file, blocks = docs_figures.DOCUMENTS[doc]
    text = doc.read_text()
    assert docs_figures.block_names(text) == set(blocks(json.loads(results_file.read_text()))), \
        "every generated block is in the document"
    assert text == docs_figures.rendered(doc), f"stale figures in {doc.name}: run python -m tests.docs_figures"


def test_a_changed_result_changes_the_document() -> None:
    results = json.loads(docs_figures.CHAOS_RESULTS.read_text())
    results["crash"]["lost"] = 7
    text = docs_figures.RELIABILITY.read_text()
    assert docs_figures.render(text, docs_figures.reliability_blocks(results)) != text
