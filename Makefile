# The two set-up commands of the README. Both install what they need (apt packages,
# cargo-pgrx 0.18.1) idempotently.
.PHONY: demo test bench

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash bench/als.sh
