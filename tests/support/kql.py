"""The part of Kibana's query language (KQL) our saved objects use, parsed and turned into the
Elasticsearch query Kibana sends for it.

Supported, as Kibana reads it: ``field : value``, ``field : "quoted value"``, ``field : *`` (exists),
``field : (a or b)``, ``field >= n`` (and ``>``, ``<``, ``<=``), ``and``, ``or``, ``not``,
parentheses; ``and`` binds tighter than ``or``. Anything else is an error naming the position, so
a saved object using more than this fails the tests instead of being replayed wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r'\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>>=|<=|>|<|:)|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<word>[^\s():<>"]+))'
)


class KqlError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(query: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        match = _TOKEN.match(query, pos)
        if match is None:
            raise KqlError(f"cannot read KQL {query!r} at {pos}")
        group = match.lastgroup or ""
        kind, text = group, match.group(group)
        if kind == "word" and text.lower() in ("and", "or", "not"):
            kind = text.lower()
        if kind == "quoted":
            text = re.sub(r"\\(.)", r"\1", text)
        tokens.append(Token(kind, text, match.start(group)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.fields: list[str] = []

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, *kinds: str) -> Token:
        token = self.peek()
        if token is None or token.kind not in kinds:
            where = token.pos if token else len(self.query)
            raise KqlError(f"KQL {self.query!r}: expected {' or '.join(kinds)} at {where}")
        self.i += 1
        return token

    def parse(self) -> dict[str, Any]:
        if not self.tokens:
            return {"match_all": {}}
        node = self.or_()
        if self.peek() is not None:
            raise KqlError(f"KQL {self.query!r}: unexpected {self.peek()!r}")
        return node

    def or_(self) -> dict[str, Any]:
        parts = [self.and_()]
        while (t := self.peek()) is not None and t.kind == "or":
            self.i += 1
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else {"bool": {"should": parts, "minimum_should_match": 1}}

    def and_(self) -> dict[str, Any]:
        parts = [self.not_()]
        while (t := self.peek()) is not None and t.kind == "and":
            self.i += 1
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}

    def not_(self) -> dict[str, Any]:
        token = self.peek()
        if token is not None and token.kind == "not":
            self.i += 1
            return {"bool": {"must_not": [self.not_()]}}
        if token is not None and token.kind == "lp":
            self.i += 1
            node = self.or_()
            self.take("rp")
            return node
        return self.clause()

    def clause(self) -> dict[str, Any]:
        field = self.take("word").text
        self.fields.append(field)
        op = self.take("op").text
        if op != ":":
            value = self.take("word", "quoted").text
            bound = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}[op]
            return {"range": {field: {bound: _number(value)}}}
        token = self.peek()
        if token is not None and token.kind == "lp":
            self.i += 1
            values = [self.take("word", "quoted").text]
            while (t := self.peek()) is not None and t.kind == "or":
                self.i += 1
                values.append(self.take("word", "quoted").text)
            self.take("rp")
            should = [{"match_phrase": {field: v}} for v in values]
            return {"bool": {"should": should, "minimum_should_match": 1}}
        value_token = self.take("word", "quoted")
        if value_token.kind == "word" and value_token.text == "*":
            return {"exists": {"field": field}}
        if value_token.kind == "word" and "*" in value_token.text:
            raise KqlError(f"KQL {self.query!r}: wildcards other than `field : *` are not supported")
        return {"match_phrase": {field: value_token.text}}


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def to_query(query: str) -> dict[str, Any]:
    """KQL text -> the Elasticsearch query (raises KqlError for what it does not support)."""
    return _Parser(query).parse()


def fields(query: str) -> list[str]:
    """The field names a KQL query names."""
    parser = _Parser(query)
    parser.parse()
    return parser.fields
