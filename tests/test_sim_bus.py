"""The virtual devices' side of the in-process CAN bus: python-can's virtual channel, with a
light copy per receiver. The harness's standard ``virtual`` bus must see exactly what python-can's
own VirtualBus would have delivered."""

from __future__ import annotations

import uuid

import can
import pytest

from virtual_devices.endpoints.sim_bus import sim_bus


@pytest.fixture
def channel() -> str:
    return f"test-sim-bus-{uuid.uuid4().hex}"


def test_frames_reach_standard_virtual_buses_as_python_can_delivers_them(channel: str) -> None:
    device = sim_bus(channel, preserve_timestamps=True)
    harness = can.Bus(interface="virtual", channel=channel)
    other = can.Bus(interface="virtual", channel=channel)
    try:
        sent = can.Message(
            arbitration_id=0x351, is_extended_id=False, data=b"\x01\x02\x03", timestamp=12.5
        )
        device.send(sent, timeout=1.0)
        first, second = harness.recv(timeout=1.0), other.recv(timeout=1.0)
        assert first is not None and second is not None
        for got in (first, second):
            assert (got.arbitration_id, bytes(got.data), got.timestamp) == (0x351, b"\1\2\3", 12.5)
            assert got.is_rx and got.channel == channel and not got.is_extended_id
        first.data[0] = 0xFF  # each receiver has its own frame
        assert second.data[0] == 1 and sent.data[0] == 1
        assert device.recv(timeout=0.0) is None  # not its own frames
        other.send(can.Message(arbitration_id=0x305, data=b"", timestamp=1.0), timeout=1.0)
        heard = device.recv(timeout=1.0)
        assert heard is not None and heard.arbitration_id == 0x305
    finally:
        for bus in (device, harness, other):
            bus.shutdown()


def test_a_wall_clock_device_bus_stamps_its_frames_now(channel: str) -> None:
    device = sim_bus(channel, preserve_timestamps=False)
    harness = can.Bus(interface="virtual", channel=channel)
    try:
        device.send(can.Message(arbitration_id=1, data=b"", timestamp=5.0), timeout=1.0)
        got = harness.recv(timeout=1.0)
        assert got is not None and got.timestamp > 1e9  # epoch seconds, not the 5.0 given
    finally:
        device.shutdown()
        harness.shutdown()


def test_a_closed_device_bus_refuses_to_send(channel: str) -> None:
    device = sim_bus(channel)
    device.shutdown()
    with pytest.raises(can.CanOperationError):
        device.send(can.Message(arbitration_id=1), timeout=1.0)


def test_a_bus_that_stopped_listening_still_sends_and_nothing_is_queued_for_it(
    channel: str,
) -> None:
    from can.interfaces.virtual import channels

    deaf = sim_bus(channel, preserve_timestamps=True)
    device = sim_bus(channel, preserve_timestamps=True)
    harness = can.Bus(interface="virtual", channel=channel)
    try:
        deaf.stop_listening()
        assert deaf.queue not in channels[channel]
        device.send(can.Message(arbitration_id=0x351, data=b"\1", timestamp=2.0), timeout=1.0)
        assert deaf.recv(timeout=0.0) is None
        got = harness.recv(timeout=1.0)
        assert got is not None and got.arbitration_id == 0x351  # the others still get it
        deaf.send(can.Message(arbitration_id=0x305, data=b"", timestamp=3.0), timeout=1.0)
        heard = device.recv(timeout=0.0)
        assert heard is not None and heard.arbitration_id == 0x305 and heard.timestamp == 3.0
    finally:
        for bus in (deaf, device, harness):
            bus.shutdown()
    assert channel not in channels  # shut down cleanly, the channel freed


def test_a_bus_that_stopped_listening_shuts_down_after_the_others(channel: str) -> None:
    from can.interfaces.virtual import channels

    deaf = sim_bus(channel)
    harness = can.Bus(interface="virtual", channel=channel)
    deaf.stop_listening()
    harness.shutdown()  # the last listener: python-can drops the channel
    deaf.shutdown()
    alone = sim_bus(f"{channel}-alone")
    alone.stop_listening()
    alone.shutdown()
    assert channel not in channels and f"{channel}-alone" not in channels
