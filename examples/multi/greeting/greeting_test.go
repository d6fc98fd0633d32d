package greeting

import "testing"

func TestFor(t *testing.T) {
	if got := For(" gopher "); got != "hello, gopher" {
		t.Fatalf("For = %q", got)
	}
	if got := For(""); got != "hello, world" {
		t.Fatalf("For(\"\") = %q", got)
	}
}

func TestLoud(t *testing.T) {
	if got := Loud("go"); got != "HELLO, GO!" {
		t.Fatalf("Loud = %q", got)
	}
}
