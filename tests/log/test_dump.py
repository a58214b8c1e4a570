import json
import subprocess
import sys

from raftlog.log import PartitionLog
from raftlog.log.record_batch import encode_batch


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "log", "dump", *args], capture_output=True, text=True, timeout=60
    )


def test_dump_prints_batches_and_records_like_kafka_dump_log(tmp_path):
    log = PartitionLog(tmp_path / "t-0")
    log.append(encode_batch([(b"k1", b"v1", [("h", b"x")], 1000), (None, None, None, 1001)], "gzip"), leader_epoch=3)
    log.close()
    result = run(str(tmp_path / "t-0"), "--print-records")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "baseOffset: 0 lastOffset: 1 count: 2" in lines[1] and "compresscodec: gzip" in lines[1]
    assert "isvalid: true" in lines[1] and "partitionLeaderEpoch: 3" in lines[1]
    assert "| offset: 0 CreateTime: 1000 keySize: 2 valueSize: 2" in lines[2] and "payload: v1" in lines[2]
    assert "keySize: -1 valueSize: -1" in lines[3]
    data = json.loads(run(str(tmp_path / "t-0" / "00000000000000000000.log"), "--output", "json").stdout)
    assert data[0]["batches"][0]["count"] == 2


def test_dump_reports_corruption_and_bad_paths(tmp_path):
    log = PartitionLog(tmp_path / "t-0")
    log.append(encode_batch([(b"k", b"v", None, 1)]), leader_epoch=0)
    log.close()
    segment = tmp_path / "t-0" / "00000000000000000000.log"
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    result = run(str(segment))
    assert result.returncode == 2 and "isvalid: false" in result.stdout and "CRC mismatch" in result.stdout
    missing = run(str(tmp_path / "nope"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
