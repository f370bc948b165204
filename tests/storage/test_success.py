"""The effective-success rule: its Python and SQL forms agree on all nine (human, auto) pairs, on a real SQLite."""

from __future__ import annotations

import itertools

from sqlalchemy import select

from storage.episode_query import EpisodeQuery, SuccessLabel
from storage.episode_store import EpisodeStore
from storage.models import Episode
from storage.success import effective_success, effective_success_sql

VERDICTS = (True, False, None)
PAIRS = list(itertools.product(VERDICTS, VERDICTS))  # (human, auto)


def test_python_rule() -> None:
    assert [effective_success(human, auto) for human, auto in PAIRS] == [
        True, True, True,  # the operator said success
        False, False, False,  # the operator said failure
        True, False, None,  # no verdict: the automatic check, if any
    ]  # fmt: skip


def test_sql_agrees_with_python_and_the_episode_object(h, store: EpisodeStore) -> None:
    ids = {h.record_episode(store, n=2, human_success=human, auto_success=auto): (human, auto) for human, auto in PAIRS}
    rule = effective_success_sql(Episode.human_success, Episode.auto_success)
    with store.session_factory() as session:
        sql = {episode_id: value for episode_id, value in session.execute(select(Episode.id, rule))}
    for episode_id, (human, auto) in ids.items():
        expected = effective_success(human, auto)
        assert sql[episode_id] is expected, (human, auto)
        assert store.get_episode(episode_id).effective_success is expected, (human, auto)
    # The list filter (SQL) files every episode under the label of its Python value.
    labels = {True: SuccessLabel.SUCCESS, False: SuccessLabel.FAILURE, None: SuccessLabel.UNLABELED}
    for value, label in labels.items():
        infos, total = store.query_episodes(EpisodeQuery(success=label, limit=50))
        assert {i.id for i in infos} == {e for e, (hu, au) in ids.items() if effective_success(hu, au) is value}
        assert total == len(infos)
