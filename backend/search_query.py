"""The `q` parameter: full-text search in web-search syntax, parsed once for both databases.

`order paid` finds events containing both words, `"payment declined"` the phrase, `-cancelled`
leaves out events containing the word (`-"two words"` a phrase). Quotes that do not close end
at the end of the text; nothing else is an operator (no OR, no parentheses, no wildcards), so a
user's text can never become query syntax: every term goes to the database quoted, as data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUERY_CHARS = 500
MAX_TERMS = 20
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)(\S+)')
# What the full-text index splits words on: anything not a letter or digit. A term is kept as
# the words it splits into, so `order.created` searches the two words as a phrase.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Term:
    words: tuple[str, ...]  # one word, or a phrase (lowercase)
    exclude: bool = False

    @property
    def is_phrase(self) -> bool:
        return len(self.words) > 1


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    terms: tuple[Term, ...]

    @property
    def include(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if not t.exclude)

    @property
    def exclude(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.exclude)


def parse_search(text: str) -> SearchQuery:
    """Raises ValueError with a message for a user when there is nothing to search for."""
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"at most {MAX_QUERY_CHARS} characters")
    terms: list[Term] = []
    for match in _TOKEN.finditer(text):
        quoted_minus, quoted, plain_minus, plain = match.groups()
        raw = quoted if quoted is not None else plain
        exclude = bool(quoted_minus if quoted is not None else plain_minus)
        found = tuple(w.lower() for w in _WORD.findall(raw or ""))
        if found:
            terms.append(Term(found, exclude))
    if len(terms) > MAX_TERMS:
        raise ValueError(f"at most {MAX_TERMS} words or phrases")
    if not any(not t.exclude for t in terms):
        raise ValueError("needs at least one word to search for (exclusions alone match all)")
    return SearchQuery(text, tuple(terms))


def fts5_match(query: SearchQuery) -> str:
    """The query as an SQLite FTS5 MATCH expression, every term a quoted string."""

    def quoted(term: Term) -> str:
        return '"' + " ".join(term.words).replace('"', '""') + '"'

    expression = " AND ".join(quoted(t) for t in query.include)
    for term in query.exclude:
        expression = f"({expression}) NOT {quoted(term)}"
    return expression


def tsquery_terms(query: SearchQuery) -> tuple[list[str], list[str]]:
    """(included, excluded) terms for Postgres, each a phrase of words; the store joins them
    with `phraseto_tsquery`, which takes them as data."""
    return (
        [" ".join(t.words) for t in query.include],
        [" ".join(t.words) for t in query.exclude],
    )
