package serve

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// apiError is an error answer in vLLM's current form (0.10 and later):
//
//	{"error": {"message": "...", "type": "BadRequestError", "param": null, "code": 400}}
//
// Every 4xx and 5xx the server writes has it, unknown paths and methods
// included, so a client reads one shape whatever went wrong.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

// errorBody is the JSON object an apiError travels in.
type errorBody struct {
	Error *apiError `json:"error"`
}

// errorTypes name each status as vLLM's OpenAI server does.
var errorTypes = map[int]string{
	http.StatusBadRequest:            "BadRequestError",
	http.StatusUnauthorized:          "AuthenticationError",
	http.StatusNotFound:              "NotFoundError",
	http.StatusMethodNotAllowed:      "MethodNotAllowed",
	http.StatusRequestEntityTooLarge: "RequestEntityTooLarge",
	http.StatusTooManyRequests:       "TooManyRequests",
	http.StatusInternalServerError:   "InternalServerError",
	http.StatusServiceUnavailable:    "ServiceUnavailableError",
}

// newError is an error answer with status code.
func newError(code int, format string, args ...any) *apiError {
	t, ok := errorTypes[code]
	if !ok {
		t = strings.ReplaceAll(http.StatusText(code), " ", "")
	}
	return &apiError{Message: fmt.Sprintf(format, args...), Type: t, Code: code}
}

func badRequest(err error) *apiError { return newError(http.StatusBadRequest, "%s", err) }

// errShuttingDown answers what arrives after Shutdown began.
var errShuttingDown = newError(http.StatusServiceUnavailable, "the server is shutting down")

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Code, errorBody{e})
}

// bodyError is the answer to a body that could not be read: 413 when it
// is over the limit, 400 otherwise.
func bodyError(err error) *apiError {
	if mb := (*http.MaxBytesError)(nil); errors.As(err, &mb) {
		return newError(http.StatusRequestEntityTooLarge, "the request body is over %d bytes (the server's --max-request-bytes)", mb.Limit)
	}
	return badRequest(fmt.Errorf("malformed JSON body: %w", err))
}

// notFound and methodNotAllowed stand in for net/http's plain-text
// answers.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, newError(http.StatusNotFound, "%s %s: no such route", r.Method, r.URL.Path))
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, newError(http.StatusMethodNotAllowed, "%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, allow))
	}
}
