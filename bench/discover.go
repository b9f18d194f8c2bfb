package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ServerInfo is what a server says of itself, where it says it: the
// model's vocabulary and context, and for a slot-based engine (llama.cpp's
// server) its slots and each slot's context. Zero where the server says
// nothing.
type ServerInfo struct {
	Vocab       int // /v1/models meta.n_vocab (llama.cpp)
	MaxModelLen int // /v1/models max_model_len (vLLM, elis-sim serve)
	Slots       int // /props total_slots (llama.cpp)
	SlotContext int // /props default_generation_settings.n_ctx: one slot's context
}

// Discover asks the server at base for its ServerInfo: /v1/models, then
// /props. A server that answers neither gives a zero ServerInfo, not an
// error: every field is a default to refine, never required.
func Discover(ctx context.Context, client *http.Client, base, key, model string) ServerInfo {
	var info ServerInfo
	var models struct {
		Data []struct {
			ID          string `json:"id"`
			MaxModelLen int    `json:"max_model_len"`
			Meta        struct {
				NVocab int `json:"n_vocab"`
			} `json:"meta"`
		} `json:"data"`
	}
	if getJSON(ctx, client, base, "/v1/models", key, &models) == nil {
		for _, m := range models.Data {
			if m.ID == model || len(models.Data) == 1 {
				info.Vocab, info.MaxModelLen = m.Meta.NVocab, m.MaxModelLen
			}
		}
	}
	var props struct {
		TotalSlots int `json:"total_slots"`
		Defaults   struct {
			NCtx int `json:"n_ctx"`
		} `json:"default_generation_settings"`
	}
	if getJSON(ctx, client, base, "/props", key, &props) == nil {
		info.Slots, info.SlotContext = props.TotalSlots, props.Defaults.NCtx
	}
	return info
}

func getJSON(ctx context.Context, client *http.Client, base, path, key string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v)
}

// Fit trims shapes to what the server can hold: prompts and contexts to a
// slot's (or the model's) context less the tokens decoded after them,
// batches to its slots; shapes left with nothing are an error.
func (info ServerInfo) Fit(sh ProfileShapes) (ProfileShapes, error) {
	limit := info.SlotContext
	if limit == 0 {
		limit = info.MaxModelLen
	}
	keep := func(v []int, max int) []int {
		var out []int
		for _, x := range v {
			if max <= 0 || x <= max {
				out = append(out, x)
			}
		}
		return out
	}
	out := sh
	out.Prompts = keep(sh.Prompts, limit-2)             // a prompt and its one token
	out.Contexts = keep(sh.Contexts, limit-sh.Decode-1) // a prompt and its decodes
	out.Batches = keep(sh.Batches, info.Slots)
	if len(out.Prompts) == 0 || len(out.Contexts) == 0 || len(out.Batches) == 0 {
		return out, fmt.Errorf("no shape fits the server (a slot's context %d tokens, %d slots): prompts %v, contexts %v with %d decoded, batches %v",
			limit, info.Slots, sh.Prompts, sh.Contexts, sh.Decode, sh.Batches)
	}
	return out, nil
}

// waitForServers polls each server's /v1/models until it answers 200, for
// at most cfg.Wait (nothing to do when it is 0); a server that does not
// answer in time is an error naming it.
func (cfg *Config) waitForServers(ctx context.Context) error {
	if cfg.Wait <= 0 {
		return nil
	}
	client := cfg.Client
	if client == nil {
		client = http.DefaultClient
	}
	deadline := time.Now().Add(cfg.Wait)
	for _, u := range cfg.URLs {
		for {
			var v any
			err := getJSON(ctx, client, u, "/v1/models", cfg.APIKey, &v)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not answer /v1/models within --wait %v: %v", u, cfg.Wait, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}
