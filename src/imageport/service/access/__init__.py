"""Access: who is calling (signatures, tokens), projects and their keys, and the replay memory."""
