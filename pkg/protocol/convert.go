package protocol

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
)

// This file converts between the hand-written API and the generated types.

func infoToPB(i WorkerInfo) *HostInfo {
	return &HostInfo{
		Admin:   i.Admin,
		Host:    i.Host,
		Os:      i.OS,
		Arch:    i.Arch,
		Version: i.Version,
		Basedir: i.Basedir,
		Numcpus: int32(i.NumCPU),
		Extra:   maps.Clone(i.Extra),
	}
}

func infoFromPB(p *HostInfo) WorkerInfo {
	return WorkerInfo{
		Admin:   p.GetAdmin(),
		Host:    p.GetHost(),
		OS:      p.GetOs(),
		Arch:    p.GetArch(),
		Version: p.GetVersion(),
		Basedir: p.GetBasedir(),
		NumCPU:  int(p.GetNumcpus()),
		Extra:   maps.Clone(p.GetExtra()),
	}
}

func durToPB(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func durFromPB(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func streamToPB(s Stream) OutputChunk_Stream {
	switch s {
	case Stdout:
		return OutputChunk_STREAM_STDOUT
	case Stderr:
		return OutputChunk_STREAM_STDERR
	case Header:
		return OutputChunk_STREAM_HEADER
	case LogFile:
		return OutputChunk_STREAM_LOG
	}
	return OutputChunk_STREAM_UNSPECIFIED
}

func streamFromPB(s OutputChunk_Stream) Stream {
	switch s {
	case OutputChunk_STREAM_STDERR:
		return Stderr
	case OutputChunk_STREAM_HEADER:
		return Header
	case OutputChunk_STREAM_LOG:
		return LogFile
	}
	return Stdout
}

// validateCommand checks what the master can check before sending cmd.
func validateCommand(cmd Command) error {
	switch {
	case cmd.Shell == nil && cmd.Git == nil:
		return errors.New("protocol: command has nothing to run")
	case cmd.Shell != nil && cmd.Git != nil:
		return errors.New("protocol: command has both a shell and a git command")
	case cmd.Shell != nil:
		if (len(cmd.Shell.Argv) == 0) == (cmd.Shell.Script == "") {
			return errors.New("protocol: shell command needs exactly one of argv and script")
		}
		if sig := cmd.Shell.InterruptSignal; sig != "" && !ValidSignal(sig) {
			return fmt.Errorf("protocol: interrupt signal %q is not one of %s", sig, strings.Join(Signals, ", "))
		}
	case cmd.Git != nil:
		g := cmd.Git
		if g.RepoURL == "" {
			return errors.New("protocol: git command needs a repourl")
		}
		if g.Mode != "" && g.Mode != GitIncremental && g.Mode != GitFull {
			return fmt.Errorf("protocol: git mode %q is not %q or %q", g.Mode, GitIncremental, GitFull)
		}
		switch g.Method {
		case "", GitClobber, GitFresh, GitClean, GitCopy:
		default:
			return fmt.Errorf("protocol: git method %q is not %q, %q, %q or %q", g.Method, GitClobber, GitFresh, GitClean, GitCopy)
		}
		if g.Depth < 0 {
			return fmt.Errorf("protocol: git depth %d is negative", g.Depth)
		}
	}
	return nil
}

func commandToPB(id uint64, cmd Command) *StartCommand {
	if g := cmd.Git; g != nil {
		return &StartCommand{
			CommandId: id,
			Builder:   cmd.Builder,
			Command: &StartCommand_Git{Git: &Git{
				Repourl:           g.RepoURL,
				Branch:            g.Branch,
				Revision:          g.Revision,
				Mode:              g.Mode,
				Method:            g.Method,
				Depth:             int32(g.Depth),
				Workdir:           g.Workdir,
				Submodules:        g.Submodules,
				SshPrivateKeyFile: g.SSHPrivateKeyFile,
			}},
		}
	}
	sh := cmd.Shell
	sig := sh.InterruptSignal
	if sig == "" {
		sig = "KILL"
		if sh.SigtermTime > 0 {
			sig = "TERM"
		}
	}
	return &StartCommand{
		CommandId: id,
		Builder:   cmd.Builder,
		Command: &StartCommand_Shell{Shell: &Shell{
			Argv:            sh.Argv,
			Script:          sh.Script,
			Workdir:         sh.Workdir,
			Env:             sh.Env,
			Timeout:         durToPB(sh.Timeout),
			MaxTime:         durToPB(sh.MaxTime),
			SigtermTime:     durToPB(sh.SigtermTime),
			InterruptSignal: sig,
			DropStdout:      sh.NoStdout,
			DropStderr:      sh.NoStderr,
			Logfiles:        sh.Logfiles,
		}},
	}
}

func commandFromPB(m *StartCommand) (Command, error) {
	cmd := Command{Builder: m.GetBuilder()}
	switch c := m.GetCommand().(type) {
	case *StartCommand_Shell:
		sh := c.Shell
		cmd.Shell = &ShellCommand{
			Argv:            sh.GetArgv(),
			Script:          sh.GetScript(),
			Workdir:         sh.GetWorkdir(),
			Env:             sh.GetEnv(),
			Timeout:         durFromPB(sh.GetTimeout()),
			MaxTime:         durFromPB(sh.GetMaxTime()),
			SigtermTime:     durFromPB(sh.GetSigtermTime()),
			InterruptSignal: sh.GetInterruptSignal(),
			NoStdout:        sh.GetDropStdout(),
			NoStderr:        sh.GetDropStderr(),
			Logfiles:        sh.GetLogfiles(),
		}
	case *StartCommand_Git:
		g := c.Git
		cmd.Git = &GitCommand{
			RepoURL:           g.GetRepourl(),
			Branch:            g.GetBranch(),
			Revision:          g.GetRevision(),
			Mode:              g.GetMode(),
			Method:            g.GetMethod(),
			Depth:             int(g.GetDepth()),
			Workdir:           g.GetWorkdir(),
			Submodules:        g.GetSubmodules(),
			SSHPrivateKeyFile: g.GetSshPrivateKeyFile(),
		}
	default:
		return cmd, fmt.Errorf("unknown command %T (a newer master?)", c)
	}
	return cmd, validateCommand(cmd)
}

func resultToPB(id uint64, r Result) *Complete {
	return &Complete{
		CommandId:   id,
		ExitCode:    int32(r.ExitCode),
		Elapsed:     durationpb.New(r.Elapsed),
		Signal:      r.Signal,
		TimedOut:    r.TimedOut,
		Interrupted: r.Interrupted,
		Error:       r.Err,
		GotRevision: r.GotRevision,
	}
}

func resultFromPB(c *Complete) Result {
	return Result{
		ExitCode:    int(c.GetExitCode()),
		Signal:      c.GetSignal(),
		Elapsed:     durFromPB(c.GetElapsed()),
		TimedOut:    c.GetTimedOut(),
		Interrupted: c.GetInterrupted(),
		Err:         c.GetError(),
		GotRevision: c.GetGotRevision(),
	}
}
