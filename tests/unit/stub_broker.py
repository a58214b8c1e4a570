"""An in-process BrokerService for client tests: one broker (itself) leading every partition.

Tests inject failures (``list_offsets_failures``, ``produce_failures``), stall Produce
(``produce_open``), check idempotent producers' sequences as a leader does (``sequences``) and read
what the clients sent (``produce_requests``, ``stored``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import grpc

from raftlog.api.pipelined import serve_pipelined
from raftlog.api.status import abort
from raftlog.errors import RaftlogError
from raftlog.log.record_batch import iter_headers, set_base_offset
from raftlog.replication.producer_state import ProducerStateTable
from raftlog.v1 import broker_pb2, broker_pb2_grpc

BROKER_ID = 1


class StubBroker(broker_pb2_grpc.BrokerServiceServicer):
    def __init__(self, topics: dict[str, int]):
        self.topics = topics  # name -> partition count
        self.port = 0
        self.list_offsets_failures: list = []  # each: a RaftlogError to answer with, or a grpc.StatusCode to abort with
        self.produce_open = asyncio.Event()  # cleared: Produce calls wait (a stalled leader)
        self.produce_open.set()
        self.produce_requests: list[broker_pb2.ProduceRequest] = []
        # (topic, partition) -> errors the next Produce attempts of that partition are answered with
        self.produce_failures: dict[tuple[str, int], list[RaftlogError]] = defaultdict(list)
        # (topic, partition) -> the leader's idempotent-producer table (ProducerStateTable rules)
        self.sequences: dict[tuple[str, int], ProducerStateTable] = defaultdict(ProducerStateTable)
        self.stored: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        self.producer_ids_issued = 0  # InitProducerId hands out ids 1, 2, ...
        self.initial_producer_epoch = 0
        self._log_end: dict[tuple[str, int], int] = defaultdict(int)
        self._server: grpc.aio.Server | None = None

    async def start(self) -> str:
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        broker_pb2_grpc.add_BrokerServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self.address

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server:
            await self._server.stop(None)

    async def Metadata(self, request, context):
        return broker_pb2.MetadataResponse(
            brokers=[broker_pb2.BrokerEndpoint(broker_id=BROKER_ID, host="127.0.0.1", port=self.port)],
            topics=[
                broker_pb2.TopicMetadata(
                    name=name,
                    topic_id=name.encode().ljust(16, b"-")[:16],
                    partitions=[
                        broker_pb2.PartitionMetadata(
                            partition=i, leader=BROKER_ID, leader_epoch=0, replicas=[BROKER_ID], isr=[BROKER_ID]
                        )
                        for i in range(count)
                    ],
                )
                for name, count in self.topics.items()
                if not request.topics or name in request.topics
            ],
        )

    async def ListOffsets(self, request, context):
        if self.list_offsets_failures:
            failure = self.list_offsets_failures.pop(0)
            if isinstance(failure, RaftlogError):
                await abort(context, failure)
            await context.abort(failure, "injected")
        return broker_pb2.ListOffsetsResponse(
            results=[
                broker_pb2.ListOffsetsResult(
                    topic=p.topic,
                    partition=p.partition,
                    offset=0 if p.timestamp == -2 else self._log_end[(p.topic, p.partition)],
                )
                for p in request.partitions
            ]
        )

    async def Produce(self, request, context):
        self.produce_requests.append(request)
        await self.produce_open.wait()
        results = []
        for data in request.partitions:
            key = (data.topic, data.partition)
            try:
                base = self._append(key, data.records)
            except RaftlogError as exc:
                results.append(
                    broker_pb2.PartitionProduceResult(
                        topic=data.topic, partition=data.partition, error_reason=exc.reason, error_message=exc.message
                    )
                )
                continue
            results.append(
                broker_pb2.PartitionProduceResult(topic=data.topic, partition=data.partition, base_offset=base)
            )
        return broker_pb2.ProduceResponse(results=results)

    async def ProduceStream(self, request_iterator, context):
        async for answer in serve_pipelined(
            context,
            request_iterator,
            lambda r: self.Produce(r, context),
            broker_pb2.ProduceStreamResponse,
            None,
            "Produce",
        ):
            yield answer

    def _append(self, key: tuple[str, int], data: bytes) -> int:
        """Appends one partition's batches (a duplicate is answered with its first offset); the base offset."""
        if self.produce_failures[key]:
            raise self.produce_failures[key].pop(0)
        headers = [header for _, header in iter_headers(data)]
        table = self.sequences[key]
        for h in headers:
            duplicate = table.check(h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence)
            if duplicate is not None:
                return duplicate.first_offset
        base = self._log_end[key]
        records = bytearray(data)
        for (pos, _), h in zip(iter_headers(data), headers):
            set_base_offset(records, pos, self._log_end[key])
            table.record(
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.last_sequence,
                self._log_end[key],
                self._log_end[key] + h.record_count - 1,
            )
            self._log_end[key] += h.record_count
        self.stored[key].append(bytes(records))
        return base

    async def FetchStream(self, request_iterator, context):
        async for answer in serve_pipelined(
            context, request_iterator, lambda r: self.Fetch(r, context), broker_pb2.FetchStreamResponse, None, "Fetch"
        ):
            yield answer

    async def Fetch(self, request, context):
        results = []
        for p in request.partitions:
            key = (p.topic, p.partition)
            results.append(
                broker_pb2.FetchPartitionResult(
                    topic=p.topic,
                    partition=p.partition,
                    high_watermark=self._log_end[key],
                    records=b"".join(self.stored[key]),
                )
            )
        if not any(r.records for r in results):
            await asyncio.sleep(request.max_wait_ms / 1000.0)
        return broker_pb2.FetchResponse(results=results)

    async def InitProducerId(self, request, context):
        self.producer_ids_issued += 1
        return broker_pb2.InitProducerIdResponse(
            producer_id=self.producer_ids_issued, producer_epoch=self.initial_producer_epoch
        )

    def records_per_request(self) -> list[int]:
        return [
            sum(h.record_count for p in r.partitions for _, h in iter_headers(p.records)) for r in self.produce_requests
        ]
