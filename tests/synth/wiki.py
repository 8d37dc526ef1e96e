"""A small linked Wikipedia for the synthesis tests: pages that mention each other's titles."""

from __future__ import annotations

from asearcher.retrieval.urls import CANONICAL_PREFIX

# Each page mentions the titles of the pages it links to (links are derived from title mentions).
PAGES = {
    "Alpha Station": "Alpha Station is a railway station opened in 1901. It connects to Beta Town and Gamma River.",
    "Beta Town": "Beta Town is a town founded in 1820 by Delta Smith. It lies near Gamma River.",
    "Gamma River": "Gamma River flows through Beta Town. Its source is in Epsilon Hills.",
    "Delta Smith": "Delta Smith was a merchant born in 1790.",
    "Epsilon Hills": "Epsilon Hills is a range of hills with no further facts.",
    "Lonely Page": "Lonely Page mentions no other page at all.",
}


def url(title: str) -> str:
    return CANONICAL_PREFIX + title.replace(" ", "%20")
