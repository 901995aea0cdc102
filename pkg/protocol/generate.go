package protocol

// worker.pb.go and worker_grpc.pb.go are generated from worker.proto by
// gen.sh (protoc plus the plugins pinned in go.mod's tool block).
//go:generate sh gen.sh
