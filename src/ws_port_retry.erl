%% @doc The `retry_fun' contract of {@link ws_port:connect/2}, as pure
%% functions (the driver runs them; EUnit tests them).
%%
%% This is the contract of off_broadway_websocket's `ws_retry_fun': the
%% retry state is the user's own map (initially the `retry_state' option,
%% default {@link default_state/0}). After each failed attempt the fun is
%% called with the current state and returns either the next state, whose
%% `delay' (milliseconds, a non-negative integer) is waited before the next
%% attempt and which is the input of the next call (every key the fun keeps
%% is carried through), or `stop': no more attempts, the connection is
%% closed with the reason of the last failure. After a successful
%% reconnection the state starts again from its initial value.
%%
%% The fun is called with the state only (not the failure reason nor the
%% attempt number: those are in the owner's `ws_port_down' message).
%%
%% This module also holds the `retry_on' option: which failures are retried
%% at all (whatever the policy says about how often). It is a list of
%% failure classes (`network', `timeout', `http_5xx', `http_429',
%% `http_4xx', `tls', `protocol', `http_other') and at most one entry about
%% the closes the server sends, by close code (a close frame without a code
%% counts as 1005, as `{remote, 1005, <<>>}' reports it):
%% <ul>
%% <li>`remote_close': every server close;</li>
%% <li>`{remote_close, Codes}': those with a code in `Codes';</li>
%% <li>`{remote_close, {except, Codes}}': every one but those;</li>
%% <li>no such entry: none.</li>
%% </ul>
%% Or one of two named policies ({@link retry_on/1} spells them out):
%% `default', the default of {@link ws_port:connect/2}, and
%% `stay_connected', the default of the long-lived layers (`ws_port_client',
%% `WsPort.Client', `WsPort.Producer').
-module(ws_port_retry).

-export([default_state/0, next/2, validate_fun/1, validate_state/1]).
-export([retry_on/1, our_close_codes/0, validate_retry_on/1]).

-export_type([retry_fun/0, retry_state/0, next_result/0]).
-export_type([retry_on/0, retry_on_entry/0, close_code/0]).

-type close_code() :: 1000..4999.
-type retry_on_entry() ::
    ws_port_proto:retry_class()
    | {remote_close, [close_code()] | {except, [close_code()]}}.
-type retry_on() :: default | stay_connected | [retry_on_entry()].

-type retry_state() :: #{atom() => term()}.
-type retry_fun() :: fun((retry_state()) -> retry_state() | stop).
-type next_result() ::
    {ok, Delay :: non_neg_integer(), retry_state()}
    | stop
    | {error, {bad_return, term()} | {crash, atom(), term()}}.

-define(MAX_DELAY, 4294967295).
%% as many close codes as the port program takes in one remote_close entry
-define(MAX_CLOSE_CODES, 64).

%% @doc The initial state used when `retry_fun' is given without
%% `retry_state': five retries, ten seconds apart, as
%% off_broadway_websocket's default (the fun decides what the keys mean).
-spec default_state() -> retry_state().
default_state() ->
    #{max_retries => 5, retries_left => 5, delay => 10000}.

%% @doc Calls `Fun' on `State' and checks what it returns.
%%
%% Returns `{ok, Delay, NextState}' when the fun returned a map with a
%% `delay' key holding an integer in 0..4294967295, `stop' when it returned
%% `stop', `{error, {bad_return, Value}}' for anything else and
%% `{error, {crash, Class, Reason}}' when it raised, exited or threw.
-spec next(retry_fun(), retry_state()) -> next_result().
next(Fun, State) ->
    try Fun(State) of
        stop ->
            stop;
        #{delay := Delay} = Next when
            is_integer(Delay), Delay >= 0, Delay =< ?MAX_DELAY
        ->
            {ok, Delay, Next};
        Other ->
            {error, {bad_return, Other}}
    catch
        Class:Reason -> {error, {crash, Class, Reason}}
    end.

%% @doc Checks a `retry_fun' option: a fun of arity 1.
-spec validate_fun(term()) -> ok | error.
validate_fun(F) when is_function(F, 1) -> ok;
validate_fun(_) -> error.

%% @doc Checks a `retry_state' option: a map (its keys are the user's; the
%% fun's returned map must have `delay').
-spec validate_state(term()) -> ok | error.
validate_state(S) when is_map(S) -> ok;
validate_state(_) -> error.

%% @doc A named `retry_on' policy as the list it stands for.
%%
%% `default' (what {@link ws_port:connect/2} retries): network failures,
%% timeouts, 5xx and 429 upgrade answers, protocol errors of the server,
%% and server closes that say the server is going away or restarting, or
%% failed, or gave no code: 1001, 1005 (no code), 1006, 1011, 1012, 1013,
%% 1014. A close with 1000 (normal) or any other code is final, as in gun,
%% Mint and WebSockex.
%%
%% `stay_connected' (what the long-lived layers retry, whose job is to stay
%% connected: a feed that rotates its connections with 1000 must not stop
%% them): the same classes, and every server close except the ones a server
%% sends about what WE sent ({@link our_close_codes/0}): reconnecting would
%% only send the same again.
-spec retry_on(default | stay_connected) -> [retry_on_entry()].
retry_on(default) ->
    [network, timeout, http_5xx, http_429, protocol,
     {remote_close, [1001, 1005, 1006, 1011, 1012, 1013, 1014]}];
retry_on(stay_connected) ->
    [network, timeout, http_5xx, http_429, protocol, {remote_close, {except, our_close_codes()}}].

%% @doc The close codes a server sends in answer to what the client sent
%% (RFC 6455 7.4.1): 1002 protocol error, 1003 a data type it cannot
%% accept, 1007 invalid payload data (e.g. text that is not UTF-8), 1009 a
%% message too big. `stay_connected' does not retry them.
-spec our_close_codes() -> [close_code()].
our_close_codes() ->
    [1002, 1003, 1007, 1009].

%% @doc Checks a `retry_on' option. The error names the first bad element:
%% `{bad_option, retry_on, Element}' (an unknown class, a second
%% remote_close entry, or the whole value when it is neither a list nor a
%% name), `{bad_option, {retry_on, remote_close}, Bad}' (a code that is not
%% an integer 1000..4999, codes that are not a proper list, more than 64).
-spec validate_retry_on(term()) ->
    ok | {error, {bad_option, retry_on | {retry_on, remote_close}, term()}}.
validate_retry_on(Name) when Name =:= default; Name =:= stay_connected ->
    ok;
validate_retry_on(List) when is_list(List) ->
    validate_entries(List, false);
validate_retry_on(Other) ->
    {error, {bad_option, retry_on, Other}}.

validate_entries([], _SeenClose) ->
    ok;
validate_entries([Entry | Rest], SeenClose) ->
    case entry_kind(Entry) of
        class ->
            validate_entries(Rest, SeenClose);
        close when SeenClose ->
            {error, {bad_option, retry_on, Entry}};
        close ->
            validate_entries(Rest, true);
        {bad_codes, Bad} ->
            {error, {bad_option, {retry_on, remote_close}, Bad}};
        bad ->
            {error, {bad_option, retry_on, Entry}}
    end;
validate_entries(Improper, _) ->
    {error, {bad_option, retry_on, Improper}}.

entry_kind(remote_close) ->
    close;
entry_kind({remote_close, {except, Codes}}) ->
    codes_kind(Codes);
entry_kind({remote_close, Codes}) ->
    codes_kind(Codes);
entry_kind(Class) ->
    Classes = [network, timeout, http_5xx, http_429, http_4xx, tls, protocol, http_other],
    case lists:member(Class, Classes) of
        true -> class;
        false -> bad
    end.

codes_kind(Codes) when is_list(Codes) ->
    try length(Codes) of
        N when N > ?MAX_CLOSE_CODES ->
            {bad_codes, Codes};
        _ ->
            case [C || C <- Codes, not (is_integer(C) andalso C >= 1000 andalso C =< 4999)] of
                [] -> close;
                [Bad | _] -> {bad_codes, Bad}
            end
    catch
        error:badarg -> {bad_codes, Codes}
    end;
codes_kind(Other) ->
    {bad_codes, Other}.
