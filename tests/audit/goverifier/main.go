// Command goverifier checks the control plane's audit log with standard transparency-log
// tooling that nobody on the project wrote: golang.org/x/mod/sumdb/note verifies the
// checkpoint signatures with the published verifier key, and github.com/transparency-dev/merkle
// verifies RFC 9162 inclusion and consistency proofs.
//
// It reads one JSON file holding raw answers of the control plane's API:
//
//	{"verifier_key": "...", "old_checkpoint": "<signed note>", "checkpoint": "<signed note>",
//	 "consistency": <GET .../proof/consistency>, "records": [<GET /v1/audit/records/{id}>...]}
//
// and exits 0 only when every check passes.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

type recordAnswer struct {
	Log struct {
		Index     uint64 `json:"index"`
		LeafHash  string `json:"leaf_hash"`
		Canonical string `json:"canonical"`
	} `json:"log"`
	Proof struct {
		Size       uint64   `json:"size"`
		Hashes     []string `json:"hashes"`
		Checkpoint string   `json:"checkpoint"`
	} `json:"proof"`
}

type input struct {
	VerifierKey   string `json:"verifier_key"`
	OldCheckpoint string `json:"old_checkpoint"`
	Checkpoint    string `json:"checkpoint"`
	Consistency   struct {
		From   uint64   `json:"from"`
		To     uint64   `json:"to"`
		Hashes []string `json:"hashes"`
	} `json:"consistency"`
	Records []recordAnswer `json:"records"`
}

type checkpoint struct {
	origin string
	size   uint64
	root   []byte
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func decode(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		fail("bad base64 %q: %v", s, err)
	}
	return b
}

func decodeAll(in []string) [][]byte {
	out := make([][]byte, len(in))
	for i, s := range in {
		out[i] = decode(s)
	}
	return out
}

// open verifies a signed checkpoint note and parses its body (c2sp.org/tlog-checkpoint).
func open(msg string, verifiers note.Verifiers) checkpoint {
	n, err := note.Open([]byte(msg), verifiers)
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint body too short: %q", n.Text)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size %q: %v", lines[1], err)
	}
	if n.Sigs[0].Name != lines[0] {
		fail("checkpoint origin %q is not the key name %q", lines[0], n.Sigs[0].Name)
	}
	return checkpoint{origin: lines[0], size: size, root: decode(lines[2])}
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: goverifier INPUT.json")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		fail("input: %v", err)
	}
	verifier, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	verifiers := note.VerifierList(verifier)
	latest := open(in.Checkpoint, verifiers)
	old := open(in.OldCheckpoint, verifiers)
	hasher := rfc6962.DefaultHasher

	for _, r := range in.Records {
		canonical := decode(r.Log.Canonical)
		leaf := hasher.HashLeaf(canonical)
		if !bytes.Equal(leaf, decode(r.Log.LeafHash)) {
			fail("leaf %d: leaf hash is not SHA-256(0x00 || canonical)", r.Log.Index)
		}
		cp := open(r.Proof.Checkpoint, verifiers)
		if cp.size != r.Proof.Size {
			fail("leaf %d: proof size %d, checkpoint size %d", r.Log.Index, r.Proof.Size, cp.size)
		}
		if err := proof.VerifyInclusion(hasher, r.Log.Index, cp.size, leaf, decodeAll(r.Proof.Hashes), cp.root); err != nil {
			fail("leaf %d: inclusion: %v", r.Log.Index, err)
		}
	}
	c := in.Consistency
	if c.From != old.size || c.To != latest.size {
		fail("consistency proof is %d->%d, checkpoints are %d->%d", c.From, c.To, old.size, latest.size)
	}
	if err := proof.VerifyConsistency(hasher, old.size, latest.size, decodeAll(c.Hashes), old.root, latest.root); err != nil {
		fail("consistency: %v", err)
	}
	fmt.Printf("OK %s: %d inclusion proofs, consistency %d -> %d\n", latest.origin, len(in.Records), old.size, latest.size)
}
