package rwsplit

import (
	"context"
	"testing"
	"time"
)

func TestReadLevel(t *testing.T) {
	bg := context.Background()
	s := NewSession()
	level := func(ctx context.Context) consistencyLevel {
		o := optionsOf(ctx)
		if o == nil {
			o = &callOptions{}
		}
		return o.readLevel()
	}
	tests := []struct {
		name string
		ctx  context.Context
		want consistencyLevel
	}{
		{"nothing", bg, levelEventual},
		{"session", WithSession(bg, s), levelSession},
		{"primary", WithPrimary(bg), levelStrong},
		{"session then primary", WithPrimary(WithSession(bg, s)), levelStrong},
		{"primary then session", WithSession(WithPrimary(bg), s), levelStrong},
		{"primary over eventual", WithPrimary(WithConsistency(bg, Eventual)), levelStrong},
		{"primary then eventual", WithConsistency(WithPrimary(bg), Eventual), levelStrong},
		{"eventual with session", WithConsistency(WithSession(bg, s), Eventual), levelEventual},
		{"session then eventual", WithSession(WithConsistency(bg, Eventual), s), levelEventual},
		{"read-your-writes without session", WithConsistency(bg, ReadYourWrites), levelEventual},
		{"read-your-writes with session", WithConsistency(WithSession(bg, s), ReadYourWrites), levelSession},
		{"strong", WithConsistency(bg, Strong), levelStrong},
		{"bounded", WithConsistency(WithSession(bg, s), BoundedStaleness(time.Second)), levelBounded},
		{"bounded 0", WithConsistency(bg, BoundedStaleness(0)), levelStrong},
		{"nil session", WithSession(bg, nil), levelEventual},
	}
	for _, tt := range tests {
		if got := level(tt.ctx); got != tt.want {
			t.Errorf("%s: readLevel = %d, want %d", tt.name, got, tt.want)
		}
		if got := forcedPrimary(tt.ctx); got != (tt.want == levelStrong) {
			t.Errorf("%s: forcedPrimary = %v", tt.name, got)
		}
	}
	if (&callOptions{}).readLevel() != levelEventual || (&callOptions{session: s}).readLevel() != levelSession {
		t.Error("default levels")
	}
}

func TestConsistencyValues(t *testing.T) {
	if BoundedStaleness(0) != Strong || BoundedStaleness(-time.Second) != Strong {
		t.Error("BoundedStaleness(<= 0) is not Strong")
	}
	if c := BoundedStaleness(250 * time.Millisecond); c.level != levelBounded || c.maxLag != 250*time.Millisecond {
		t.Errorf("BoundedStaleness(250ms) = %+v", c)
	}
	for c, want := range map[Consistency]string{
		{}:                            "default",
		Eventual:                      "eventual",
		ReadYourWrites:                "read-your-writes",
		Strong:                        "strong",
		BoundedStaleness(time.Second): "bounded staleness 1s",
	} {
		if got := c.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", c, got, want)
		}
	}
}

func TestWithOptionsNesting(t *testing.T) {
	bg := context.Background()
	if got := WithSession(bg, nil); got != bg {
		t.Error("WithSession(ctx, nil) did not return ctx")
	}
	if SessionFrom(bg) != nil {
		t.Error("SessionFrom(background) != nil")
	}
	s, s2 := NewSession(), NewSession()
	ctx := WithSession(bg, s)
	if SessionFrom(ctx) != s {
		t.Error("SessionFrom does not return the session")
	}
	if got := WithSession(ctx, nil); got != ctx {
		t.Error("WithSession(ctx, nil) did not return ctx")
	}
	wc := WriteConcern{Replicas: 2, Timeout: time.Second}
	deep := WithWriteConcern(WithConsistency(WithPrimary(ctx), Eventual), wc)
	if SessionFrom(deep) != s {
		t.Error("the session was lost under later options")
	}
	o := optionsOf(deep)
	if !o.primary || o.consistency != Eventual || o.concern == nil || *o.concern != wc || o.session != s {
		t.Errorf("options = %+v", o)
	}
	// Later calls do not change the options of the contexts they wrap.
	if o := optionsOf(ctx); o.primary || o.consistency != (Consistency{}) || o.concern != nil {
		t.Errorf("the parent's options changed: %+v", o)
	}
	// A later session replaces an earlier one, for the inner context only.
	inner := WithSession(deep, s2)
	if SessionFrom(inner) != s2 || SessionFrom(deep) != s {
		t.Error("a nested WithSession did not replace the session for its context only")
	}
	if !optionsOf(inner).primary {
		t.Error("a nested WithSession dropped WithPrimary")
	}
	// Values of other packages survive.
	type key struct{}
	vctx := WithPrimary(WithSession(context.WithValue(bg, key{}, "v"), s))
	if vctx.Value(key{}) != "v" {
		t.Error("a context value was lost")
	}
}
