"""How the consumer side is sized from the settings (push_service.assembly)."""

from __future__ import annotations

import pytest

from push_service.assembly import CHUNK_DEVICES_IN_FLIGHT, chunks_in_flight


@pytest.mark.parametrize(("chunk_size", "chunks"), [(500, 16), (1000, 8), (100, 80)])
def test_a_process_works_on_a_fixed_number_of_chunk_devices(chunk_size: int, chunks: int) -> None:
    """Rule: audience chunks in flight hold about CHUNK_DEVICES_IN_FLIGHT devices whatever
    FANOUT_CHUNK_SIZE is: enough that their outcome writes coalesce as device lists' do,
    few enough that a fan-out prefetched by the hundred stays small in memory."""
    assert chunks_in_flight(chunk_size) == chunks
    assert chunks * chunk_size <= CHUNK_DEVICES_IN_FLIGHT
