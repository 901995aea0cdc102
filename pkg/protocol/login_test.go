package protocol

import (
	"google.golang.org/grpc"
)

// loginStream logs in on stream as a worker of this version would: it
// sends h (with a client nonce when h has none), answers a Challenge with
// the Proof of password, and returns the master's next message (a Welcome,
// or the stream's error).
func loginStream(stream grpc.BidiStreamingClient[WorkerMessage, MasterMessage], h *Hello, password string) (*MasterMessage, error) {
	if h.ClientNonce == nil {
		h.ClientNonce = newNonce()
	}
	if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: h}}); err != nil {
		_, rerr := stream.Recv()
		return nil, rerr
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if ch := m.GetChallenge(); ch != nil {
		mac := LoginMAC(password, h.GetName(), ch.GetNonce(), h.GetClientNonce(), nil)
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Proof{Proof: &Proof{Mac: mac}}}); err != nil {
			_, rerr := stream.Recv()
			return nil, rerr
		}
		return stream.Recv()
	}
	return m, nil
}
