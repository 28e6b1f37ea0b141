package netctl_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// execDevice runs this test binary as the device process as user nobody.
// bin must be a copy of the binary that nobody can execute.
func execDevice(bin, name string, out *bytes.Buffer) *exec.Cmd {
	cmd := exec.Command(bin, "wg-device", name)
	cmd.Env = append(os.Environ(), deviceEnv+"=1")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// copyExecutable copies the running test binary to dir with mode 0755.
func copyExecutable(dir string) (string, error) {
	src, err := os.Open(os.Args[0])
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst := dir + "/device.test"
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return "", err
	}
	return dst, f.Close()
}
