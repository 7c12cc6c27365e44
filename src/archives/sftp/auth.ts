/** How we log in: the order of ssh2 authentication attempts built from the resolved credentials. */
import type { AnyAuthMethod, AuthHandlerMiddleware, AuthenticationType } from 'ssh2';
import type { AuthMethod, SftpCredentials } from '../credentials.js';

/**
 * Password first when one is configured (netrc, then env), then the key, then
 * the agent. A password is also answered over keyboard-interactive, which is
 * how PAM-based servers often ask for it.
 */
export function authSequence(credentials: SftpCredentials): AuthHandlerMiddleware {
  const username = credentials.username;
  const attempts = credentials.methods.flatMap((method: AuthMethod): AnyAuthMethod[] => {
    switch (method.kind) {
      case 'password':
        return [
          { type: 'password', username, password: method.password.reveal() },
          {
            type: 'keyboard-interactive',
            username,
            prompt: (_name, _instructions, _lang, prompts, finish) => finish(prompts.map(() => method.password.reveal())),
          },
        ];
      case 'key':
        return [{ type: 'publickey', username, key: method.key.reveal(), ...(method.passphrase ? { passphrase: method.passphrase.reveal() } : {}) }];
      case 'agent':
        return [{ type: 'agent', username, agent: method.socket }];
    }
  });
  let next = 0;
  let first = true;
  return (authsLeft, _partialSuccess, callback) => {
    if (first) {
      // Ask with `none` first: the server's answer lists the methods it accepts,
      // so we do not burn MaxAuthTries on methods it would refuse anyway.
      first = false;
      return callback({ type: 'none', username });
    }
    while (next < attempts.length) {
      const attempt = attempts[next++]!;
      // An agent is a client-side source of public keys: the server calls it 'publickey'.
      const serverName: AuthenticationType = attempt.type === 'agent' ? 'publickey' : attempt.type;
      if (authsLeft === null || authsLeft.includes(serverName)) return callback(attempt);
    }
    // ssh2 takes `false` as "nothing left to try"; its typings omit it.
    return (callback as unknown as (done: false) => void)(false);
  };
}
