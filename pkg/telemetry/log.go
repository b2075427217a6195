package telemetry

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/config"
)

// LogConfig is how a service logs.
type LogConfig struct {
	Level  zerolog.Level // LOG_LEVEL: debug, info, warn, error
	Format string        // LOG_FORMAT: json, console, or auto (console on a terminal)
}

// ReadLogConfig reads LOG_LEVEL and LOG_FORMAT.
func ReadLogConfig(r *config.Reader) LogConfig {
	name := r.OneOf("LOG_LEVEL", "info", "trace", "debug", "info", "warn", "error")
	level, _ := zerolog.ParseLevel(name)
	return LogConfig{Level: level, Format: r.OneOf("LOG_FORMAT", "auto", "auto", "json", "console")}
}

// NewLogger returns the process's one logger, JSON lines unless asked for (or writing to)
// a terminal. It is passed to whoever logs; nothing sets a global.
func NewLogger(w io.Writer, c LogConfig) zerolog.Logger {
	console := c.Format == "console" || (c.Format == "auto" && isTerminal(w))
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(c.Level).Hook(TraceHook{}).With().Timestamp().Logger()
}

// TraceHook stamps a log line written with .Ctx(ctx) with the trace and span of ctx, so
// that every line can be found from its trace in Jaeger and the other way round.
type TraceHook struct{}

// Run adds trace_id and span_id when the event's context carries a span.
func (TraceHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	sc := trace.SpanContextFromContext(e.GetCtx())
	if sc.IsValid() {
		e.Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String())
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
