package stomptab

import (
	"crypto/rand"
	"encoding/hex"
)

func randomHex(nBytes int) string {
	b := make([]byte, nBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

// NewTabID returns a random tab id (16 hex characters), like the id the
// browser keeps in sessionStorage.
func NewTabID() string { return randomHex(8) }

// QueueName is the per-tab queue name the browser uses: tab-<tabid>-<name>.
func QueueName(tabID, name string) string { return "tab-" + tabID + "-" + name }

// RandomQueueName is QueueName(NewTabID(), name).
func RandomQueueName(name string) string { return QueueName(NewTabID(), name) }

// UniqueName returns prefix + "-" + 12 random hex characters, for
// per-test exchange names on a shared broker.
func UniqueName(prefix string) string { return prefix + "-" + randomHex(6) }
