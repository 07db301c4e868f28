"""Every rule of the catalogue speaks both of the console's languages: an English title and
advice, and a Simplified Chinese title and advice (``title_zh``, ``advice_zh``), which the web
console shows on its Chinese pages and ``docs/rules.md`` lists."""

from __future__ import annotations

import re

import pytest

from imageport.rules.base import Rule
from imageport.rules.catalogue import RULES
from imageport.rules.docs import rules_markdown

#: CJK Unified Ideographs: a Chinese text has some (a copy of the English one has none).
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_every_rule_has_a_chinese_title_and_advice(rule: Rule) -> None:
    assert HAN.search(rule.title_zh), f"{rule.id}: title_zh is not Chinese"
    assert HAN.search(rule.advice_zh), f"{rule.id}: advice_zh is not Chinese"
    assert rule.title_zh.strip() == rule.title_zh and len(rule.title_zh) <= 60
    # commands and paths in the advice are kept as they are in the English advice
    for command in re.findall(r"`([^`]+)`", rule.advice_zh):
        assert command in rule.advice or command in rule.docs(), (rule.id, command)


def test_chinese_titles_tell_the_rules_apart() -> None:
    titles = [rule.title_zh for rule in RULES]
    assert len(set(titles)) == len(titles)


def test_the_rules_page_lists_the_chinese_titles() -> None:
    page = rules_markdown()
    for rule in RULES:
        assert f"| {rule.title} | {rule.title_zh} |" in page
