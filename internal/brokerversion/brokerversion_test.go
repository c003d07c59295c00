package brokerversion_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokerversion"
)

func script(t *testing.T, args ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "rabbitmq-versions.sh")
	out, err := exec.Command("bash", append([]string{path}, args...)...).Output()
	require.NoError(t, err, "%s %v", path, args)
	return string(out)
}

// The Go table and scripts/rabbitmq-versions.sh name the same versions, in
// the same order (the default first), with the same ports.
func TestMatchesScript(t *testing.T) {
	assert.Equal(t, brokerversion.Names(), strings.Fields(script(t, "list")))
	assert.Equal(t, brokerversion.DefaultName, brokerversion.Names()[0])
	for _, name := range brokerversion.Names() {
		v, err := brokerversion.Lookup(name)
		require.NoError(t, err)
		want := strings.Join([]string{
			"DURABLEWS_RABBITMQ=" + name,
			"DURABLEWS_AMQP_URL=" + v.AMQPURL(),
			"DURABLEWS_WEB_STOMP_URL=" + v.WebSTOMPURL(),
			"DURABLEWS_STOMP_ADDR=" + v.STOMPAddr(),
			"DURABLEWS_MANAGEMENT_URL=" + v.ManagementURL(),
		}, "\n") + "\n"
		assert.Equal(t, want, script(t, "env", name), name)
	}
}

func TestLookup(t *testing.T) {
	t.Setenv(brokerversion.EnvRoots, "/r")
	v, err := brokerversion.Lookup("4.3")
	require.NoError(t, err)
	assert.Equal(t, "/r/4.3", v.Root)
	assert.True(t, v.Chrooted())
	assert.Equal(t, "/r/4.3/tmp/x", v.Path("/tmp/x"))
	v, err = brokerversion.Lookup("3.10")
	require.NoError(t, err)
	assert.False(t, v.Chrooted())
	assert.Equal(t, "amqp://guest:guest@127.0.0.1:5672/", v.AMQPURL())
	_, err = brokerversion.Lookup("3.13")
	assert.ErrorContains(t, err, `DURABLEWS_RABBITMQ="3.13": unknown RabbitMQ version (supported: 4.0, 3.10, 4.3)`)
	t.Setenv(brokerversion.EnvVersion, "")
	v, err = brokerversion.Selected()
	require.NoError(t, err)
	assert.Equal(t, brokerversion.DefaultName, v.Name)
}
