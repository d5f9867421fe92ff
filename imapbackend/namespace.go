package imapbackend

import (
	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/store"
)

// Namespace answers NAMESPACE: one personal namespace with no prefix, nothing shared.
func (s *Session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: store.Delim}},
	}, nil
}
