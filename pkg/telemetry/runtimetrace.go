package telemetry

import (
	"context"
	rtrace "runtime/trace"
)

// The names a search's work is marked with in an execution trace, which tools/tracewait
// reads back: the gateway's task for a POST, and the regions its stages are cut at.
const (
	TaskPOST        = "POST"
	RegionRetryRead = "retry rule read"
	RegionPublish   = "publish request"
	RegionWait      = "wait for the record"
	RegionCreate    = "create record"
)

// SearchTask marks a search's work in a Go execution trace (PPROF_ADDR's
// /debug/pprof/trace): a task of kind, logged with the search's id, which tools/tracewait
// joins across services to say where a slow search spent its time. The id is not personal
// data; nothing else is logged. Unless a trace is being taken it does nothing and
// allocates nothing, so it stays on the hot path.
func SearchTask(ctx context.Context, kind, searchID string) (context.Context, func()) {
	if !rtrace.IsEnabled() {
		return ctx, func() {}
	}
	ctx, task := rtrace.NewTask(ctx, kind)
	rtrace.Log(ctx, "search_id", searchID)
	return ctx, task.End
}

// Region marks a step of the task in ctx, such as a write and its ack, in the same trace.
// Unless a trace is being taken it costs one check.
func Region(ctx context.Context, name string) interface{ End() } {
	return rtrace.StartRegion(ctx, name)
}
