"""Bicep syntax, checked with the tree-sitter Bicep grammar when it is installed (no Bicep compiler can
run here). `az bicep build` remains the authority (docs/deploy.md); this catches a broken brace, a missing
value or a stray token before a deployment does."""

from __future__ import annotations

import pytest

from tests.unit.infra import bicep

pytestmark = pytest.mark.unit


def error_nodes(node, found):
    if node.type == "ERROR" or node.is_missing:
        found.append(node)
    for child in node.children:
        error_nodes(child, found)
    return found


@pytest.fixture(scope="module")
def parser():
    tree_sitter = pytest.importorskip("tree_sitter")
    grammar = pytest.importorskip("tree_sitter_bicep")
    return tree_sitter.Parser(tree_sitter.Language(grammar.language()))


def test_the_grammar_rejects_broken_bicep(parser):
    assert parser.parse(b"resource r 'A/b@1' = {\n  properties: { a: 1, b: \n}\n").root_node.has_error


@pytest.mark.parametrize("path", sorted(bicep.INFRA.rglob("*.bicep")), ids=lambda p: p.name)
def test_every_bicep_file_parses(parser, path):
    source = path.read_bytes()
    errors = error_nodes(parser.parse(source).root_node, [])
    assert not errors, [
        (f"line {e.start_point[0] + 1}", source[e.start_byte : e.end_byte][:80].decode()) for e in errors[:5]]
