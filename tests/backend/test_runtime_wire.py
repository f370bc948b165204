"""backend.runtime.wire: errors keep their class across the process boundary, and the shared-memory frame ring
never hands on a frame the writer overwrote under the reader."""

from __future__ import annotations

import pytest

from backend.control import LeaseHeldError, NotControllerError
from backend.runtime.wire import FrameRing, decode_error, encode_error
from backend.services.live_policy import PolicyMismatchError


@pytest.mark.parametrize(
    "error",
    [
        LeaseHeldError("bob", 12.0),
        NotControllerError("you do not hold the lease"),
        ValueError("bad seed"),
        PolicyMismatchError("pick v1 cannot drive this robot"),
    ],  # fmt: skip
    ids=lambda e: type(e).__name__,
)
def test_an_error_comes_back_as_its_own_class_with_its_message(error):
    again = decode_error(*encode_error(error))
    assert type(again) is type(error) and str(again) == str(error)


def test_an_errors_attributes_cross_and_an_unknown_class_becomes_a_runtime_error():
    again = decode_error(*encode_error(LeaseHeldError("bob", 12.0)))
    assert again.operator == "bob"  # the socket names who holds the lease from this
    unknown = decode_error("no.such.module", "Gone", ("it broke",), {})
    assert type(unknown) is RuntimeError and "Gone: it broke" in str(unknown)
    not_an_error = decode_error("os", "getcwd", ("x",), {})  # a name that is not an exception class
    assert type(not_an_error) is RuntimeError


@pytest.fixture
def ring():
    writer = FrameRing.create()
    reader = FrameRing(writer.path, create=False, slots=writer.slots, slot_bytes=writer.slot_bytes)
    yield writer, reader
    reader.close()
    writer.close(unlink=True)


def test_a_frame_written_by_one_mapping_is_read_by_the_other(ring):
    writer, reader = ring
    slot = writer.write(1, b"frame one")
    assert reader.read(1, slot) == b"frame one"
    assert reader.torn == 0


def test_a_slot_the_writer_lapped_is_dropped_not_handed_on(ring):
    writer, reader = ring
    slot = writer.write(1, b"old")
    writer.write(1 + writer.slots, b"newer frame in the same slot")  # the reader fell a whole ring behind
    assert reader.read(1, slot) is None
    assert reader.torn == 1
    assert reader.read(1 + writer.slots, slot) == b"newer frame in the same slot"


def test_a_frame_bigger_than_a_slot_is_refused(ring):
    writer, _ = ring
    assert writer.write(1, b"x" * (writer.capacity() + 1)) is None
    assert writer.write(2, b"x" * writer.capacity()) is not None
