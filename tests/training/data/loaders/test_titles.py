"""Matching catalogues by normalised title + year (MovieLens-100K <-> MovieLens-1M)."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from uservec.training.data.loaders.titles import match_titles, title_key


def test_spellings_of_one_film_share_a_key():
    assert title_key("Usual Suspects, The (1995)") == title_key("The Usual Suspects (1995)")
    assert title_key("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == \
        title_key("City of Lost Children, The (1995)")
    assert title_key("Nikita (La Femme Nikita) (1990)") == title_key("Nikita (1990)")


def test_the_year_separates_remakes_and_a_title_without_one_is_never_matched():
    assert title_key("Psycho (1960)") != title_key("Psycho (1998)")
    assert title_key("unknown") is None


def test_match_maps_source_ids_to_target_ids_and_leaves_the_rest_out():
    source = pd.Series({"10": "Toy Story (1995)", "11": "Heat (1995)", "12": "No Year"})
    target = pd.Series({"1": "Toy Story (1995)", "7": "Heat (1995)", "8": "Heat (1995)"})
    assert match_titles(source, target) == {"10": "1", "11": "7"}  # first of a duplicate, by id


@given(st.text(alphabet="abcdefghij ,'", min_size=1, max_size=20), st.integers(1900, 2030))
def test_a_key_ignores_case_and_punctuation(name, year):
    plain = title_key(f"{name} ({year})")
    shouted = title_key(f"!{name.upper()} ({year})")
    assert plain == shouted
