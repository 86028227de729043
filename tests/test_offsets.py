from fabric.log._offsets import OffsetTracker


def test_committable_stops_at_the_first_unfinished_record() -> None:
    t = OffsetTracker(10)
    for off in range(10, 16):
        t.delivered(off)
    assert t.committable == 10
    for off in (10, 11, 13, 15):
        t.done(off)
    assert t.committable == 12  # 12 still running: 13 and 15 must not be skipped
    assert t.in_flight == 2
    t.done(12)
    assert t.committable == 14
    t.done(14)
    assert t.committable == 16 and t.in_flight == 0


def test_gaps_in_offsets_are_fine() -> None:
    t = OffsetTracker(0)
    for off in (0, 5, 9):  # compaction / transaction markers leave gaps
        t.delivered(off)
    t.done(5)
    t.done(0)
    assert t.committable == 9
    t.done(9)
    assert t.committable == 10


def test_reset_forgets_delivered_records() -> None:
    t = OffsetTracker(0)
    t.delivered(0)
    t.delivered(1)
    t.reset(7)
    assert t.committable == 7 and t.in_flight == 0
