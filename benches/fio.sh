#!/usr/bin/env bash
# The fio figures BENCHMARKS.md sets the storage benches against, measured on the
# directory the benches write to (target/tmp, the repository's filesystem), so the
# ratios compare the store with its own disk. One JSON report per job in $OUT.
#
# Usage: benches/fio.sh OUT_DIR [ROUND]   (run from the repository root)
set -euo pipefail
OUT=${1:?output directory}
ROUND=${2:-1}
DIR=${ROCKSHARD_BENCH_DIR:-target/tmp}/fio
mkdir -p "$OUT" "$DIR"

# Buffered sequential write, 1 MiB blocks, 2 GiB, with the final fsync inside the
# measured time: the store's async figure likewise ends with an fdatasync of
# everything, so both count "bytes on the disk", not copies into the page cache.
# seqw64 also fdatasyncs every 64 writes (64 MiB), as the store's flusher does at
# FLUSH_DIRTY_DEFAULT_BYTES; it is the limit the async figure is set against, because
# it is both the store's own write pattern and the faster of the two here (one 2 GiB
# end-fsync is slow on this kernel; see BENCHMARKS.md).
fio --name=seqw --directory="$DIR" --rw=write --bs=1M --size=2G --ioengine=psync \
    --end_fsync=1 --unlink=1 --output-format=json --output="$OUT/seqw-$ROUND.json"
fio --name=seqw64 --directory="$DIR" --rw=write --bs=1M --size=2G --ioengine=psync \
    --fdatasync=64 --end_fsync=1 --unlink=1 --output-format=json --output="$OUT/seqw64-$ROUND.json"

# Diagnostic: the store's own write shape. io_uring buffered writes of 288 KiB (one
# batch of 256 records), one at a time, fdatasync every 227 writes (64 MiB). The
# difference between this and the async bench is time the store spends per record.
fio --name=uring288k --directory="$DIR" --rw=write --bs=288k --size=2G --ioengine=io_uring \
    --iodepth=1 --fdatasync=227 --end_fsync=1 --unlink=1 --output-format=json \
    --output="$OUT/uring288k-$ROUND.json"

# Context only: O_DIRECT sequential write, 1 MiB blocks, 8 in flight (the device).
fio --name=dwrite --directory="$DIR" --rw=write --bs=1M --size=2G --direct=1 --iodepth=8 \
    --ioengine=io_uring --unlink=1 --output-format=json --output="$OUT/dwrite-$ROUND.json"

# 4 KiB appends each followed by fdatasync, on a fresh file (each sync also commits the
# size change, as the store's syncs commit unwritten-extent conversion): the latency a
# sync append with one writer cannot beat.
fio --name=fsync4k --directory="$DIR" --rw=write --bs=4k --size=1G --runtime=10 \
    --ioengine=psync --fdatasync=1 --unlink=1 --output-format=json --output="$OUT/fsync4k-$ROUND.json"

# The same over blocks already written and synced (fio lays the file out first): what
# the store's preparer aims for, since it writes zeros ahead of sync appends.
fio --name=fsync4k-ow --directory="$DIR" --rw=write --bs=4k --size=256M --runtime=10 \
    --ioengine=psync --fdatasync=1 --overwrite=1 --unlink=1 --output-format=json \
    --output="$OUT/fsync4k-ow-$ROUND.json"

# A group commit's own shape: buffered 288 KiB writes (one group of 256 records of
# 1136 bytes) each followed by fdatasync, over blocks already written (as the store's
# preparer leaves them). Between syncs fio only copies the bytes into the page cache,
# as the store must too, so its bandwidth here is what sync/256 would reach if the
# store's own work per record (answers, appends, encoding) took no time: the host's
# ceiling for that bench.
fio --name=group288k --directory="$DIR" --rw=write --bs=288k --size=512M --time_based --runtime=10 \
    --ioengine=psync --fdatasync=1 --overwrite=1 --unlink=1 --output-format=json \
    --output="$OUT/group288k-$ROUND.json"

# The same group commit done the other way: O_DIRECT 288 KiB writes opened O_DSYNC (the
# kernel flushes the device cache as each write completes), one at a time. No page-cache
# copy and no writeback inside the fdatasync: 25-45% more than `group288k` here (sitting
# E), the ceiling of a direct group commit.
fio --name=dsync288k --directory="$DIR" --rw=write --bs=288k --size=512M --time_based --runtime=10 \
    --ioengine=io_uring --iodepth=1 --direct=1 --sync=dsync --overwrite=1 --unlink=1 \
    --output-format=json --output="$OUT/dsync288k-$ROUND.json"

# The store's group commit since 2714f17: buffered 288 KiB writes through an
# O_DSYNC descriptor (copy, writeback of the range and the device flush in one call),
# one at a time. `bdsync288k` over blocks already written (what the preparer leaves);
# `bdsync288k-fresh` into a fresh file preallocated with fallocate (unwritten extents,
# as a new segment is, and as the store leaves it once groups are large enough that
# the preparer stops: each flush then also writes the inode's extent changes). The
# fresh file is large enough that 8 s never wrap around into written blocks.
fio --name=bdsync288k --directory="$DIR" --rw=write --bs=288k --size=512M --time_based --runtime=10 \
    --ioengine=psync --sync=dsync --overwrite=1 --unlink=1 --output-format=json \
    --output="$OUT/bdsync288k-$ROUND.json"
fio --name=bdsync288k-fresh --directory="$DIR" --rw=write --bs=288k --size=8G --time_based --runtime=8 \
    --ioengine=psync --sync=dsync --fallocate=native --unlink=1 --output-format=json \
    --output="$OUT/bdsync288k-fresh-$ROUND.json"

# Two group commits of half the size side by side on one file: whether the device
# overlaps fdatasyncs (it does not here: a Firecracker virtio disk serves one request
# at a time, and a flush is the host's fsync).
fio --name=group144kx2 --directory="$DIR" --filename=group144kx2.dat --rw=write --bs=144k --size=256M \
    --offset_increment=256M --numjobs=2 --group_reporting --time_based --runtime=10 \
    --ioengine=psync --fdatasync=1 --overwrite=1 --unlink=1 --output-format=json \
    --output="$OUT/group144kx2-$ROUND.json"

# O_DIRECT sequential read, 1 MiB blocks, 8 in flight: the cold-read limit. The file is
# laid out on the first round and kept for the others.
fio --name=dread --directory="$DIR" --filename=dread.dat --rw=read --bs=1M --size=2G \
    --direct=1 --iodepth=8 --ioengine=io_uring --output-format=json --output="$OUT/dread-$ROUND.json"

# Diagnostic: O_DIRECT sequential read shaped like the store's cold path before its
# read-ahead windows (one read of about 32 records, 36 KiB, at a time).
fio --name=dread36k --directory="$DIR" --filename=dread.dat --rw=read --bs=36k --size=2G \
    --runtime=10 --direct=1 --iodepth=1 --ioengine=io_uring --output-format=json \
    --output="$OUT/dread36k-$ROUND.json"
