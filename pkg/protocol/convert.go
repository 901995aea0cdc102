package protocol

import (
	"errors"
	"fmt"
	"maps"
	"os"
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
	n := 0
	for _, set := range []bool{cmd.Shell != nil, cmd.Git != nil, cmd.File != nil, cmd.Upload != nil, cmd.Download != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("protocol: command has nothing to run")
	case n > 1:
		return errors.New("protocol: command has more than one thing to run")
	case cmd.File != nil:
		if cmd.File.Op < Mkdir || cmd.File.Op > RemoveFile {
			return fmt.Errorf("protocol: unknown file operation %d", cmd.File.Op)
		}
		if cmd.File.Path == "" {
			return errors.New("protocol: file command needs a path")
		}
	case cmd.Upload != nil:
		if cmd.Upload.Path == "" {
			return errors.New("protocol: upload command needs a path")
		}
	case cmd.Download != nil:
		if cmd.Download.Path == "" {
			return errors.New("protocol: download command needs a path")
		}
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
	switch {
	case cmd.File != nil:
		return &StartCommand{CommandId: id, Builder: cmd.Builder, Command: &StartCommand_FileOp{FileOp: &FileOperation{
			Op:   FileOperation_Op(cmd.File.Op),
			Path: cmd.File.Path,
		}}}
	case cmd.Upload != nil:
		u := cmd.Upload
		return &StartCommand{CommandId: id, Builder: cmd.Builder, Command: &StartCommand_Upload{Upload: &Upload{
			Workdir:   u.Workdir,
			Path:      u.Path,
			Directory: u.Directory,
			MaxSize:   u.MaxSize,
			Blocksize: int32(chunkSize(u.BlockSize)),
		}}}
	case cmd.Download != nil:
		d := cmd.Download
		return &StartCommand{CommandId: id, Builder: cmd.Builder, Command: &StartCommand_Download{Download: &Download{
			Workdir:   d.Workdir,
			Path:      d.Path,
			MaxSize:   d.MaxSize,
			Mode:      uint32(d.Mode.Perm()),
			Blocksize: int32(chunkSize(d.BlockSize)),
		}}}
	}
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
				Timeout:           durToPB(g.Timeout),
				MaxTime:           durToPB(g.MaxTime),
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
			EnvLists:        envListsToPB(sh.EnvLists),
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
	cmd := Command{Builder: m.GetBuilder(), Build: m.GetBuild(), ResumeKey: m.GetResumeKey(), Keep: durFromPB(m.GetKeep())}
	for _, s := range m.GetSecrets() {
		cmd.Secrets = append(cmd.Secrets, Secret{Value: s.GetValue(), Name: s.GetName()})
	}
	switch c := m.GetCommand().(type) {
	case *StartCommand_Shell:
		sh := c.Shell
		cmd.Shell = &ShellCommand{
			Argv:            sh.GetArgv(),
			Script:          sh.GetScript(),
			Workdir:         sh.GetWorkdir(),
			Env:             sh.GetEnv(),
			EnvLists:        envListsFromPB(sh.GetEnvLists()),
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
			Timeout:           durFromPB(g.GetTimeout()),
			MaxTime:           durFromPB(g.GetMaxTime()),
		}
	case *StartCommand_FileOp:
		cmd.File = &FileCommand{Op: FileOp(c.FileOp.GetOp()), Path: c.FileOp.GetPath()}
	case *StartCommand_Upload:
		u := c.Upload
		cmd.Upload = &UploadCommand{
			Workdir:   u.GetWorkdir(),
			Path:      u.GetPath(),
			Directory: u.GetDirectory(),
			MaxSize:   u.GetMaxSize(),
			BlockSize: chunkSize(int(u.GetBlocksize())),
		}
	case *StartCommand_Download:
		d := c.Download
		cmd.Download = &DownloadCommand{
			Workdir:   d.GetWorkdir(),
			Path:      d.GetPath(),
			MaxSize:   d.GetMaxSize(),
			Mode:      os.FileMode(d.GetMode()).Perm(),
			BlockSize: chunkSize(int(d.GetBlocksize())),
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

// chunkSize is a transfer's block size: n, capped at MaxChunk; zero or
// less means MaxChunk.
func chunkSize(n int) int {
	if n <= 0 || n > MaxChunk {
		return MaxChunk
	}
	return n
}

func envListsToPB(m map[string][]string) map[string]*EnvList {
	if len(m) == 0 {
		return nil
	}
	pb := make(map[string]*EnvList, len(m))
	for k, v := range m {
		pb[k] = &EnvList{Values: v}
	}
	return pb
}

func envListsFromPB(pb map[string]*EnvList) map[string][]string {
	if len(pb) == 0 {
		return nil
	}
	m := make(map[string][]string, len(pb))
	for k, v := range pb {
		m[k] = v.GetValues()
	}
	return m
}
