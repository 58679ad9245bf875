//! examples: runnable programs that show the stack as a user meets it. Each lives in `src/bin/`.
