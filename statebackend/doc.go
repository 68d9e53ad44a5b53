// Package statebackend keeps keyed state in memory, organised one table per
// key group, and snapshots, stores and restores it. Its state file format
// is shared with package pebblestate, the state backend for state larger
// than memory, whose snapshots write the same files.
//
// # Tables
//
// Key groups are the unit Weir snapshots, restores and moves when a job is
// rescaled, so every table (ValueTable, MapTable, ListTable) is split by key
// group from the start: one table per key group of the subtask's
// KeyGroupRange. A snapshot can then write key groups one after another
// with an offset index, and a restore at another parallelism reads only
// the groups its subtask owns. Tables are owned by one task goroutine and
// are not safe for concurrent use; each carries the codecs of its key and
// value types for snapshots and restores.
//
// Every table's key group is an open-addressing hash table over the key's
// hash (cowTable): linear probing, deletes that shift the following
// entries back instead of leaving tombstones, and no allocation once it
// has grown. The runtime computes a key's hash once per record, for its
// key group, and passes it to GetHashed, PutHashed and DeleteHashed (see
// KeyHasher); map and list tables hash the key themselves.
//
// AppendKeys lists the keys of one key group that hold a value in a table
// (for runtime.ForEachKey): it copies them out of the live table, so the
// caller may change the table while going through them, which walking the
// slots could not survive (a delete shifts the following entries back).
//
// # Entries: a key's small values and timers in one slot
//
// An operator's word-sized value states (bool, numbers, up to EntryWords
// of them) are WordTables: views of one Entries table per backend, whose
// slot for a key holds those values and the key's first timer of each
// time domain (the runtime's timer service queues them; see
// runtime/timerservice.go). A record that reads and writes its key's
// flags and moves its timer then finds one 64-byte slot, with one probe:
// the table remembers the key last found. WordTable sections have the
// value format, so a state can move between a WordTable and a ValueTable
// from one version of a job to the next.
//
// # Copy-on-write snapshots
//
// Backend.Snapshot is the synchronous part of a checkpoint and costs
// O(tables × key groups), whatever the number of entries.
//
// Tables copy on write by page, after Flink's CopyOnWriteStateMap (which
// does it by entry): a key group's slots are in pages of 32, each stamped
// with the table version it was written under. A snapshot takes the page
// directory and bumps the version; a write to a page of an older version
// copies that page first (and, once per snapshot, the directory), so the
// snapshot's pages are never written again. The first write after a
// checkpoint copies a few kilobytes, not a key group.
//
// # Slabs and huge pages
//
// The pages of a table whose slots hold no pointers are carved from slabs
// shared by its key groups (pageAlloc, slab.go): a grow takes one run for
// all the table's pages, from slabs that lie on transparent huge pages from
// 4 MiB up, so that the random slot reads of a large state do not also walk
// the page table; a copy-on-write copy is a page of its own, as without
// slabs. A slab lives as long as any table or snapshot holds one of its
// pages, so the allocator counts each slab's live pages and, when the
// slabs the tables pin exceed twice their live pages plus the slab being
// carved, moves the live pages out of the sparsest slab. Slabs that
// emptied while no snapshot could hold them are reused by later grows.
//
// Map tables copy each key's map on write too: a map carries the version
// it was made under, and a Put or Remove on an older one clones it first,
// so the first write to a key after a snapshot copies that key's map,
// never the key group's. List tables share lists between the table and
// its snapshots, which is safe because the table only writes past the end
// of every list a snapshot holds (see ListTable).
//
// Sections are immutable, can be serialised on another
// goroutine while the task goes on writing, and stay valid after further
// snapshots. Values themselves are not copied: a value of a reference type
// must not be changed in place after it is stored.
//
// # Section entries
//
// A section encodes the entries of one key group as a sequence of
//
//	uvarint(len(k)) k uvarint(len(v)) v
//
// where k is the key's codec encoding and v depends on the kind:
//
//	KindValue  v = value
//	KindMap    v = uvarint(n) then n × (uvarint(len) user key, uvarint(len) value)
//	KindList   v = uvarint(n) then n × (uvarint(len) item)
//	KindTimers v = varint(timestamp); a key may have several entries
//
// Maps and lists are never empty (tables drop emptied ones). Timer sections
// are written and read by the runtime through the same Section interface
// and KeyedState.Each; section names starting with '_' are reserved for it.
//
// # State file format (version 1)
//
// One state file holds one operator subtask's state of one checkpoint: its
// keyed state, for its key-group range, and its operator state. It is laid
// out for ranged reads: a restoring subtask reads the fixed-size footer,
// then the index, then one contiguous span of key-group blocks. Integers
// are little-endian; CRCs are CRC-32C (Castagnoli) of the bytes they follow
// within their block.
//
//	header    "WEIRSTAT" u16(version = 1)
//	blocks    one block per non-empty key group, ascending, contiguous:
//	            per section with entries in the group, ascending by index:
//	              u16(section index) u32(entry count) u32(byte length) entries
//	            u32(CRC of the block's preceding bytes)
//	op state  uvarint(n) then n × (uvarint(len) entry), u32(CRC)
//	index     u32(first key group) u32(number of key groups g; 0 = none)
//	          u16(number of sections s)
//	          s × (u8(kind) u16(len) name)
//	          g × (u64(block offset) u32(block length); 0, 0 = no block)
//	          u64(op state offset) u64(op state length)
//	          u32(CRC of the index's preceding bytes)
//	footer    u64(index offset) u32(index length) u16(version = 1) "WEIRSTAT"
//
// A reader checks the footer's magic and version, that the index ends
// exactly where the footer starts, the index CRC, that every block and the
// operator state lie in order between the header and the index, and each
// block's CRC when it reads it. The header repeats magic and version for
// tools identifying the file; ranged readers never read it, so it cannot
// hide corruption of anything they use. Every violation is an error wrapping
// ErrCorrupt that names the file.
//
// # Restore
//
// OpenStateFile and StateFile.ReadKeyGroups produce a KeyedState: the raw
// entries of the key groups asked for, per section. Backend.Restore takes
// one KeyedState per old file overlapping the subtask's range; a table
// decodes its section when it is registered (or at once if it already is),
// so restored state needs the codecs only the operator knows.
//
// # Checkpoint metadata
//
// A checkpoint directory holds the state files, named StateFileName(uid,
// subtask), and a _metadata manifest written last. The manifest is one
// header line and a JSON body (Metadata, with the field names of its json
// tags):
//
//	WEIR-METADATA v1 crc32c=<8 lowercase hex digits of the CRC-32C of the body>
//	{ ...JSON... }
//
// Version 2 (written only when needed) lets a subtask's state be a chain
// of file references (SubtaskState.Chain, FileRef) instead of one file;
// shared references are relative to the job's shared directory
// (SharedDir), beside its chk-N directories.
//
// Version 3 (written only when a chain has native files) lets a chain
// hold a state backend's own files after its first, full state file:
// FileRef.Local names the file in the backend's directory (a Pebble
// SST, MANIFEST, ...). Shared native files are named SharedNativeName,
// which, like SharedFileName, carries the ID of the checkpoint that
// wrote it, so UnusedSharedFiles collects them the same way.
//
// # Incremental checkpoints
//
// WriteDeltaFile writes the entries that changed between two snapshots of
// the same tables, and the keys deleted (sections named DeletedPrefix +
// name), in the state file format; MergeChain applies a chain of deltas to
// its full file at restore. Changes are found by comparing copy-on-write
// snapshots on the upload goroutine (see delta.go), so the write path
// pays nothing. Incremental keeps, per operator subtask, the snapshots and
// chains of stored checkpoints, so that the next delta builds on the
// checkpoint the JobManager names, and starts a new chain after
// MaxChainDeltas deltas. NativeUploads does the same for a Pebble
// store's native checkpoints: which SSTs the base checkpoint uploaded. UnusedSharedFiles derives which shared files no
// retained checkpoint uses from their metadata.
package statebackend
