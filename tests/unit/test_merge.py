from fanline.timeline.cursor import Cursor, Regime
from fanline.timeline.merge import Source, archive_page, inbox_page, merge_newest_first


def test_merge_is_newest_first_and_deduplicated_preferring_the_first_source() -> None:
    merged = merge_newest_first([(Source.INBOX, [9, 7, 3]), (Source.PULL, [8, 7, 1])])
    assert merged == [
        (9, Source.INBOX), (8, Source.PULL), (7, Source.INBOX), (3, Source.INBOX), (1, Source.PULL)
    ]


def test_merge_respects_limit() -> None:
    assert [i for i, _ in merge_newest_first([(Source.PULL, [5, 4, 3])], limit=2)] == [5, 4]


def test_inbox_page_with_more_inbox_continues_in_inbox_regime() -> None:
    page = inbox_page([10, 8, 6, 4], [[9, 2]], page_size=3, before_id=None)
    assert [i for i, _ in page.entries] == [10, 9, 8]
    assert page.next_cursor == Cursor(Regime.INBOX, 8)


def test_exhausted_inbox_stops_pulled_entries_at_its_floor_then_switches_to_archive() -> None:
    # Inbox has only 7 and 5 left; a pulled 3 must wait for the archive regime, because pushed
    # posts between 5 and 3 (trimmed off the inbox) would otherwise be skipped.
    page = inbox_page([7, 5], [[6, 3]], page_size=5, before_id=8)
    assert [i for i, _ in page.entries] == [7, 6, 5]
    assert page.next_cursor == Cursor(Regime.ARCHIVE, 5)


def test_empty_exhausted_inbox_hands_over_at_the_request_cursor() -> None:
    page = inbox_page([], [[6, 3]], page_size=5, before_id=8)
    assert page.entries == []
    assert page.next_cursor == Cursor(Regime.ARCHIVE, 8)


def test_inbox_missing_the_budget_uses_pulled_lists_alone_and_asks_for_the_page_again() -> None:
    page = inbox_page(None, [[6, 3], [5]], page_size=2, before_id=None)
    assert page.entries == [(6, Source.PULL), (5, Source.PULL)]
    # The inbox may hold posts between 6 and 5: the next call reads this page again, whole.
    assert page.next_cursor == Cursor(Regime.INBOX, None)
    later = inbox_page(None, [], page_size=2, before_id=40)
    assert later.entries == [] and later.next_cursor == Cursor(Regime.INBOX, 40)


def test_exhausted_inbox_with_more_than_a_page_above_floor_stays_in_inbox_regime() -> None:
    page = inbox_page([9, 4], [[8, 7, 6, 5]], page_size=3, before_id=None)
    assert [i for i, _ in page.entries] == [9, 8, 7]
    assert page.next_cursor == Cursor(Regime.INBOX, 7)


def test_archive_page_merges_author_lists_and_ends_when_exhausted() -> None:
    first = archive_page([[9, 5, 1], [8, 5, 2]], page_size=3)
    assert [i for i, _ in first.entries] == [9, 8, 5]
    assert first.next_cursor == Cursor(Regime.ARCHIVE, 5)
    last = archive_page([[1], [2]], page_size=3)
    assert [i for i, _ in last.entries] == [2, 1]
    assert last.next_cursor is None


def test_walking_pages_over_a_trimmed_inbox_returns_every_post_once_in_order() -> None:
    # Ground truth: push author posts 1..40, pull author posts 41..60 interleaved by id.
    push_posts = list(range(2, 61, 2))  # even ids
    pull_posts = list(range(1, 61, 2))  # odd ids
    inbox_all = sorted(push_posts, reverse=True)[:12]  # trimmed inbox keeps 12 newest pushes
    seen: list[int] = []
    cursor = Cursor()

    def below(ids: list[int]) -> list[int]:
        return [i for i in ids if cursor.before_id is None or i < cursor.before_id]

    for _ in range(100):
        if cursor.regime is Regime.INBOX:
            inbox = sorted(below(inbox_all), reverse=True)[:6]
            pulled = [sorted(below(pull_posts), reverse=True)[:6]]
            page = inbox_page(inbox, pulled, 5, cursor.before_id)
            if not page.entries and page.next_cursor and page.next_cursor.regime is Regime.ARCHIVE:
                cursor = page.next_cursor
                continue
        else:
            lists = [sorted(below(push_posts), reverse=True)[:6],
                     sorted(below(pull_posts), reverse=True)[:6]]
            page = archive_page(lists, 5)
        seen += [i for i, _ in page.entries]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(push_posts + pull_posts, reverse=True)
