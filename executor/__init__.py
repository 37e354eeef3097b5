"""The program that runs inside executor pods."""
