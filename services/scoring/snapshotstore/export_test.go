package snapshotstore

import "time"

// SetChunkWait shortens the wait for a chunk for a test, and returns the undo.
func SetChunkWait(d time.Duration) func() {
	prev := chunkWait
	chunkWait = d
	return func() { chunkWait = prev }
}
