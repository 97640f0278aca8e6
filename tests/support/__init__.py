"""Test support: a throwaway certificate authority and real loopback upstream servers."""
