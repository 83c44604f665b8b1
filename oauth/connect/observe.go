package connect

// Observer hears of Connect flows, for metrics (host/metrics implements
// it). provider is a configured provider's name, or "other" for a name that
// came from a URL and names none; reason is a word from a fixed set. Its
// methods must be quick and safe for concurrent use.
type Observer interface {
	// FlowStarted reports a browser sent to the provider's consent page.
	FlowStarted(provider string)
	// FlowCompleted reports a grant saved at the end of a flow.
	FlowCompleted(provider string)
	// FlowFailed reports a flow that ended without a grant: reason is
	// "link_invalid", "wrong_person", "not_configured", "state_invalid",
	// "wrong_browser", "denied", "exchange_failed" or "error".
	FlowFailed(provider, reason string)
}

// providerLabel is name if it is a configured provider, else "other": the
// name comes from the URL, and anyone can put anything there.
func (s *Service) providerLabel(name string) string {
	if s.Providers == nil {
		return "other"
	}
	if _, ok := s.Providers.Provider(name); ok {
		return name
	}
	return "other"
}

func (s *Service) started(provider string) {
	if s.Observer != nil {
		s.Observer.FlowStarted(s.providerLabel(provider))
	}
}

func (s *Service) completed(provider string) {
	if s.Observer != nil {
		s.Observer.FlowCompleted(s.providerLabel(provider))
	}
}

func (s *Service) failed(provider, reason string) {
	if s.Observer != nil {
		s.Observer.FlowFailed(s.providerLabel(provider), reason)
	}
}
