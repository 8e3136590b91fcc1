"""The upload cap: one token bucket, three priorities, nothing queues."""

from __future__ import annotations

from agent.bandwidth import CONTROL, LIVE, SNAPSHOT, Bandwidth, RateWindow


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_live_video_fits_the_cap_over_a_minute_and_control_always_goes() -> None:
    clock = Clock()
    bw = Bandwidth(kbps=800, clock=clock)  # 100,000 bytes/s
    sent = control = 0
    for _tick in range(60 * 50):  # a minute in 20 ms steps
        clock.t += 0.02
        if bw.allow(10**9, CONTROL):  # never held back, whatever its size claims
            bw.spend(40)
            control += 40
        for _camera in range(2):  # two cameras wanting 25 kB frames at 50 fps
            if bw.allow(25_000, LIVE):
                bw.spend(25_000)
                sent += 25_000
    total = sent + control
    assert control == 60 * 50 * 40
    assert 0.9 * 6_000_000 <= total <= 6_000_000 + bw.capacity, total
    assert bw.held_back > 0 and bw.sent == total


def test_snapshots_go_before_live_and_their_debt_is_repaid_by_live() -> None:
    clock = Clock()
    bw = Bandwidth(kbps=80, clock=clock)  # 10,000 bytes/s, 10,000 bytes of burst
    assert bw.allow(0, SNAPSHOT)
    bw.spend(30_000)  # a big snapshot: the bucket is 20,000 in debt
    assert not bw.allow(0, SNAPSHOT) and not bw.allow(1_000, LIVE)
    assert bw.allow(10**6, CONTROL)  # a heartbeat still goes at once
    clock.t += 2.0  # debt repaid, bucket at 0: a snapshot may go, live may not yet
    assert bw.allow(0, SNAPSHOT) and not bw.allow(1_000, LIVE)
    clock.t += 1.0
    assert bw.allow(1_000, LIVE)


def test_no_cap_allows_everything_and_still_counts() -> None:
    clock = Clock()
    bw = Bandwidth(kbps=0, clock=clock)
    assert all(bw.allow(10**9, p) for p in (CONTROL, SNAPSHOT, LIVE))
    bw.spend(1250)
    clock.t += 1.0
    assert bw.status() == {"cap_kbps": 0, "sent_kbps": 10, "held_back": 0}
    assert bw.live_share_bps() == 0


def test_the_live_budget_is_split_between_live_cameras() -> None:
    bw = Bandwidth(kbps=4000, clock=Clock())
    bw.live_started("a")
    one = bw.live_share_bps()
    bw.live_started("b")
    assert bw.live_share_bps() == one // 2 and 0 < one < 4_000_000
    bw.live_stopped("a")
    bw.live_stopped("b")
    assert bw.live_share_bps() == one


def test_a_new_cap_applies_at_once() -> None:
    clock = Clock()
    bw = Bandwidth(kbps=0, clock=clock)
    bw.set_cap(8)  # 1,000 bytes/s
    assert bw.allow(500, LIVE) and not bw.allow(950, LIVE)


def test_rate_window_forgets_old_bytes() -> None:
    clock = Clock()
    w = RateWindow(window=10, clock=clock)
    clock.t += 10
    w.add(10_000)
    assert w.bps() == 8_000
    clock.t += 11
    assert w.bps() == 0
